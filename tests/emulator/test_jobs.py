"""Job lifecycle: concurrency, FIFO, throttling, error transcripts, remote audio, webhooks."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.emulator.helpers import MODELS, SCRIPT, client, submit, upload
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import synth_wav


def test_concurrency_limit_fifo_and_throttled(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server(concurrency_limit=5, processing_fixed_s=0.4)
    with client(srv) as c:
        url = upload(c, synth_wav("One two three.", 1.0))
        ids = []
        throttled = []
        for _ in range(20):
            t = submit(c, url)
            assert t["status"] == "queued"
            ids.append(t["id"])
            throttled.append(t["throttled"])
        stats = srv.wait_until(lambda s: s["completed"] == 20, timeout=20)
        assert stats["max_concurrent_processing"] == 5
        assert stats["started_order"] == ids  # FIFO
        assert stats["queued"] == 0 and stats["processing"] == 0
        # The first five found a free slot; the rest had to wait.
        assert throttled == [None] * 5 + [True] * 15
        final = [c.get(f"/v2/transcript/{i}").json() for i in ids]
    assert all(t["status"] == "completed" for t in final)
    assert [t["throttled"] for t in final] == [None] * 5 + [True] * 15


def test_server_stays_responsive_while_jobs_run(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server(concurrency_limit=2, processing_fixed_s=5.0)
    with client(srv) as c:
        url = upload(c, synth_wav("Busy.", 1.0))
        for _ in range(4):
            submit(c, url)
        srv.wait_until(lambda s: s["processing"] == 2 and s["queued"] == 2)
        r = c.get("/v2/transcript", params={"status": "queued"})
        assert r.status_code == 200 and r.json()["page_details"]["result_count"] == 2


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            b"hello, this is plain text\n",
            "File does not appear to contain audio. File type is text/plain (ASCII text).",
        ),
        (
            b"<!DOCTYPE html><html><body>nope</body></html>",
            "File does not appear to contain "
            "audio. File type is text/html (HTML document, ASCII text).",
        ),
        (synth_wav("Hi.", 0.1), "Audio duration is too short."),
    ],
    ids=["text", "html", "too-short"],
)
def test_error_transcripts(local_server: LocalServer, data: bytes, error: str) -> None:
    with client(local_server) as c:
        t = submit(c, upload(c, data))
        assert local_server.wait_for_transcript(t["id"]) == "error"
        body = c.get(f"/v2/transcript/{t['id']}").json()
    assert body["status"] == "error" and body["error"] == error
    assert body["text"] is None and body["words"] is None


class _Files(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}
    seen: list[tuple[str, dict[str, str], bytes]] = []
    codes: list[int] = []

    def do_GET(self) -> None:
        code, body = self.routes.get(self.path, (404, b"missing"))
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append((self.path, dict(self.headers), body))
        code = type(self).codes.pop(0) if type(self).codes else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Files]]]:
    handler = type("Handler", (_Files,), {"routes": {}, "seen": [], "codes": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_remote_audio_url_is_fetched_by_the_server(
    local_server: LocalServer, receiver: tuple[str, type[_Files]]
) -> None:
    base, handler = receiver
    handler.routes["/talk.wav"] = (200, synth_wav(SCRIPT, 10.0))
    handler.routes["/secret.wav"] = (403, b"denied")
    with client(local_server) as c:
        ok = submit(c, f"{base}/talk.wav")
        gone = submit(c, f"{base}/missing.wav")
        forbidden = submit(c, f"{base}/secret.wav")
        dead = submit(c, "http://127.0.0.1:9/nothing.wav")
        for t in (ok, gone, forbidden, dead):
            local_server.wait_for_transcript(t["id"])
        ok_body = c.get(f"/v2/transcript/{ok['id']}").json()
        gone_body = c.get(f"/v2/transcript/{gone['id']}").json()
        forbidden_body = c.get(f"/v2/transcript/{forbidden['id']}").json()
        dead_body = c.get(f"/v2/transcript/{dead['id']}").json()
    assert ok_body["status"] == "completed" and ok_body["text"] == SCRIPT
    assert ok_body["audio_duration"] == 10
    url = f"{base}/secret.wav"
    assert (
        forbidden_body["error"]
        == f"Download error to {url}, 403 Client Error: Forbidden for url: {url}"
    )
    assert gone_body["error"].startswith(f"Download error to {base}/missing.wav, 404 Client Error")
    assert dead_body["error"] == (
        "Download error, unable to download http://127.0.0.1:9/nothing.wav. "
        "Please make sure the file exists and is accessible from the internet."
    )


def test_webhook_delivery_with_auth_header(
    local_server: LocalServer, receiver: tuple[str, type[_Files]]
) -> None:
    base, handler = receiver
    handler.codes = [500, 503, 200]  # two failures, then accepted
    secret = "hook-secret-value-123"
    with client(local_server) as c:
        t = submit(
            c,
            upload(c, synth_wav("Hook.", 1.0)),
            webhook_url=f"{base}/hook?x=1",
            webhook_auth_header_name="X-Hook-Secret",
            webhook_auth_header_value=secret,
        )
        assert t["webhook_auth"] is True and t["webhook_auth_header_name"] == "X-Hook-Secret"
        assert secret not in str(t)
        before = local_server.stats()["webhooks_delivered"]
        local_server.wait_until(lambda s: s["webhooks_delivered"] > before)
        body = c.get(f"/v2/transcript/{t['id']}").json()
    assert len(handler.seen) == 3
    path, headers, payload = handler.seen[-1]
    assert path == "/hook?x=1"
    assert headers["X-Hook-Secret"] == secret
    assert payload == f'{{"transcript_id":"{t["id"]}","status":"completed"}}'.encode() or (
        __import__("json").loads(payload) == {"transcript_id": t["id"], "status": "completed"}
    )
    assert body["webhook_status_code"] == 200 and secret not in str(body)


def test_webhook_4xx_is_not_retried(
    local_server: LocalServer, receiver: tuple[str, type[_Files]]
) -> None:
    base, handler = receiver
    handler.codes = [410, 200]
    with client(local_server) as c:
        before = local_server.stats()["webhooks_failed"]
        t = submit(c, upload(c, b"not audio"), webhook_url=f"{base}/hook")
        local_server.wait_until(lambda s: s["webhooks_failed"] > before)
        body = c.get(f"/v2/transcript/{t['id']}").json()
    assert len(handler.seen) == 1
    assert __import__("json").loads(handler.seen[0][2]) == {
        "transcript_id": t["id"],
        "status": "error",
    }
    assert body["webhook_status_code"] == 410


def test_webhook_gives_up_after_the_attempt_budget(
    make_server: Callable[..., LocalServer], receiver: tuple[str, type[_Files]]
) -> None:
    base, handler = receiver
    handler.codes = [500] * 20
    srv = make_server(webhook_attempts=10, webhook_retry_delay_s=0.0)
    with client(srv) as c:
        submit(c, upload(c, synth_wav("Retry.", 1.0)), webhook_url=f"{base}/hook")
        stats = srv.wait_until(lambda s: s["webhooks_failed"] == 1)
    assert stats["webhook_attempts"] == 10 and len(handler.seen) == 10


def test_params_are_echoed_and_validated(local_server: LocalServer) -> None:
    with client(local_server) as c:
        url = upload(c, synth_wav(SCRIPT, 12.0))
        t = submit(
            c,
            url,
            speech_model="best",
            word_boost=["smoke"],
            boost_param="high",
            punctuate=False,
            speakers_expected=2,
            language_code="en_us",
            keyterms_prompt=["Johns Hopkins"],
            unknown_field=1,
        )
        assert t["speech_model"] == "best" and t["word_boost"] == ["smoke"]
        assert t["boost_param"] == "high" and t["punctuate"] is False
        assert t["keyterms_prompt"] == ["Johns Hopkins"] and "unknown_field" not in t
        cases = {
            "speaker_labels": ("yes", "speaker_labels must be a Boolean"),
            "audio_start_from": (1.5, "audio_start_from must be an Integer"),
            "speech_threshold": (2, "speech_threshold must be between 0 and 1"),
            "speech_models": ("universal-2", "speech_models must be an Array"),
            "boost_param": ("max", "boost_param must be one of: low, default, high"),
            "language_code": (
                "xx_zz",
                "language_code must be a supported language code, got 'xx_zz'",
            ),
        }
        for field, (value, message) in cases.items():
            r = c.post(
                "/v2/transcript", json={"audio_url": url, "speech_models": MODELS, field: value}
            )
            assert (r.status_code, r.json()) == (400, {"error": message}), field
        r = c.post("/v2/transcript", json={"audio_url": url})
        assert r.json() == {"error": "speech_models is required"}
        r = c.post("/v2/transcript", json={"speech_models": MODELS})
        assert r.json() == {"error": "audio_url is required"}
        r = c.post(
            "/v2/transcript", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400


def test_speaker_labels_and_utterances(local_server: LocalServer) -> None:
    from tests.emulator.helpers import transcribe

    with client(local_server) as c:
        plain = transcribe(local_server, c)
        labelled = transcribe(local_server, c, speaker_labels=True)
    assert plain["utterances"] is None and all(w["speaker"] is None for w in plain["words"])
    assert {w["speaker"] for w in labelled["words"]} == {"A", "B"}
    utts = labelled["utterances"]
    assert [u["speaker"] for u in utts[:3]] == ["A", "B", "A"]
    assert " ".join(u["text"] for u in utts) == SCRIPT
    words = labelled["words"]
    assert all(0 <= w["start"] < w["end"] <= 12_000 for w in words)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words))
    assert len({w["confidence"] for w in words}) > 5
    assert labelled["speech_model_used"] == MODELS[0]


def test_a_restored_job_still_authenticates_its_webhook(
    tmp_path: Path,
    make_server: Callable[..., LocalServer],
    receiver: tuple[str, type[_Files]],
) -> None:
    """AssemblyAI keeps a job's webhook header; so does a server restarted on its state dir."""
    base, handler = receiver
    state = tmp_path / "state"
    first = make_server(state_dir=state, concurrency_limit=1, processing_per_audio_s=0.5)
    with client(first) as c:
        t = submit(
            c,
            upload(c, synth_wav("Hook.", 20.0)),  # 10 s of processing: not done when stopped
            webhook_url=f"{base}/hook",
            webhook_auth_header_name="X-Hook-Secret",
            webhook_auth_header_value="restored-secret-456",
        )
        first.wait_until(lambda s: s["processing"] == 1)
    first.stop()
    assert handler.seen == []
    second = make_server(state_dir=state, concurrency_limit=1)
    second.wait_until(lambda s: s["webhooks_delivered"] == 1)
    assert [h["X-Hook-Secret"] for _, h, _ in handler.seen] == ["restored-secret-456"]
    assert json.loads(handler.seen[0][2]) == {"transcript_id": t["id"], "status": "completed"}
    for path in (state / "transcripts").iterdir():  # the secret is on disk: owner only
        assert path.stat().st_mode & 0o077 == 0
