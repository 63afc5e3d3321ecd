"""Every route, every status the emulator can produce, validated against openapi.yml."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.integration.emulator.helpers import MODELS, client, submit, transcribe, upload
from tests.support.openapi import validate_response
from tests.support.secrets import KEY_A, KEY_B
from voxlake.emulator import FaultConfig, FaultSpec, LocalServer
from voxlake.emulator.synth import synth_wav

# (operationId, method, path template); {id} is filled with a real transcript id.
ROUTES: list[tuple[str, str, str]] = [
    ("uploadFile", "POST", "/v2/upload"),
    ("createTranscript", "POST", "/v2/transcript"),
    ("listTranscripts", "GET", "/v2/transcript"),
    ("getTranscript", "GET", "/v2/transcript/{id}"),
    ("deleteTranscript", "DELETE", "/v2/transcript/{id}"),
    ("getSubtitles", "GET", "/v2/transcript/{id}/srt"),
    ("getSubtitles", "GET", "/v2/transcript/{id}/vtt"),
    ("getTranscriptSentences", "GET", "/v2/transcript/{id}/sentences"),
    ("getTranscriptParagraphs", "GET", "/v2/transcript/{id}/paragraphs"),
    ("wordSearch", "GET", "/v2/transcript/{id}/word-search?words=smoke"),
    ("getRedactedAudio", "GET", "/v2/transcript/{id}/redacted-audio"),
]


def _call(c: httpx.Client, method: str, path: str, tid: str) -> httpx.Response:
    url = path.replace("{id}", tid)
    if method == "POST" and url == "/v2/upload":
        return c.post(url, content=b"RIFF....")
    if method == "POST":
        return c.post(
            url, json={"audio_url": "https://example.invalid/a.wav", "speech_models": MODELS}
        )
    return c.request(method, url)


@pytest.fixture(scope="module")
def done_id(local_server: LocalServer) -> str:
    with client(local_server) as c:
        return transcribe(local_server, c, redact_pii_audio=True, speaker_labels=True)["id"]


def test_success_responses_match_spec(local_server: LocalServer, done_id: str) -> None:
    with client(local_server) as c:
        for op, method, path in ROUTES:
            if op == "deleteTranscript":
                continue  # covered below on its own transcript
            r = _call(c, method, path, done_id)
            assert r.status_code == 200, (op, r.text)
            validate_response(op, r)
        # The full completed transcript, with utterances, and every list page shape.
        body = validate_response("getTranscript", c.get(f"/v2/transcript/{done_id}"))
        assert body["utterances"] and body["words"]
        validate_response("listTranscripts", c.get("/v2/transcript", params={"limit": 1}))
        fresh = transcribe(local_server, c)
        deleted = validate_response("deleteTranscript", c.delete(f"/v2/transcript/{fresh['id']}"))
        assert deleted["audio_url"] == "http://deleted_by_user"
        validate_response("getTranscript", c.get(f"/v2/transcript/{fresh['id']}"))


def test_queued_processing_and_error_transcripts_match_spec(make_server: Any) -> None:
    srv: LocalServer = make_server(concurrency_limit=1, processing_fixed_s=30.0)
    with client(srv) as c:
        a = submit(c, upload(c, synth_wav("Hello.", 1.0)))
        b = submit(c, upload(c, synth_wav("Hello.", 1.0)))
        srv.wait_until(lambda s: s["processing"] == 1)
        for t in (a, b):
            body = validate_response("getTranscript", c.get(f"/v2/transcript/{t['id']}"))
            assert body["status"] in ("queued", "processing")
        validate_response(
            "createTranscript",
            c.post("/v2/transcript", json={"audio_url": upload(c, b"x"), "speech_models": MODELS}),
        )
        # Sub-resources of an unfinished transcript: a documented 400.
        for op, method, path in ROUTES[3:]:
            if method != "GET" or op == "getTranscript":
                continue
            r = _call(c, method, path, a["id"])
            assert r.status_code == 400, (op, r.text)
            validate_response(op, r)
        r = c.delete(f"/v2/transcript/{a['id']}")
        assert r.status_code == 400
        validate_response("deleteTranscript", r)


def test_error_status_transcript_matches_spec(local_server: LocalServer) -> None:
    with client(local_server) as c:
        t = submit(c, upload(c, b"just some text, not audio\n"))
        assert local_server.wait_for_transcript(t["id"]) == "error"
        body = validate_response("getTranscript", c.get(f"/v2/transcript/{t['id']}"))
        assert body["error"].startswith("File does not appear to contain audio.")
        items = validate_response(
            "listTranscripts", c.get("/v2/transcript", params={"status": "error"})
        )
        assert any(i["id"] == t["id"] and i["error"] for i in items["transcripts"])


def test_400_responses_match_spec(local_server: LocalServer, done_id: str) -> None:
    with client(local_server) as c:
        r = c.post(
            "/v2/transcript",
            json={
                "audio_url": "https://x.test/a.mp3",
                "speech_models": MODELS,
                "format_text": "yes",
            },
        )
        assert r.status_code == 400
        assert validate_response("createTranscript", r) == {
            "error": "format_text must be a Boolean"
        }
        for bad in (
            {"limit": 0},
            {"limit": 201},
            {"limit": "x"},
            {"status": "done"},
            {"created_on": "yesterday"},
        ):
            r = c.get("/v2/transcript", params=bad)
            assert r.status_code == 400, bad
            validate_response("listTranscripts", r)
        r = c.get(f"/v2/transcript/{done_id}/word-search")
        assert r.status_code == 400
        validate_response("wordSearch", r)
        r = c.get(f"/v2/transcript/{done_id}/srt", params={"chars_per_caption": "-3"})
        assert r.status_code == 400
        validate_response("getSubtitles", r)


def test_401_on_every_route(local_server: LocalServer, done_id: str) -> None:
    for key in (None, "wrong-key", f"Bearer {KEY_A}"):
        with client(local_server, key=key) as c:
            for op, method, path in ROUTES:
                r = _call(c, method, path, done_id)
                assert r.status_code == 401, (op, key is None)
                body = validate_response(op, r)
                assert body == {"error": "Authentication error, API token missing/invalid"}


def test_404_for_unknown_ids(local_server: LocalServer, done_id: str) -> None:
    with client(local_server) as c:
        for op, method, path in ROUTES[3:]:
            r = _call(c, method, path, "6b1a3c52-0000-4000-8000-000000000000")
            assert r.status_code == 404, op
            assert validate_response(op, r) == {"error": "Not found"}
    with client(local_server, key=KEY_B) as other:  # another project cannot see it either
        r = other.get(f"/v2/transcript/{done_id}")
        assert r.status_code == 404
        validate_response("getTranscript", r)


def test_403_cross_project_upload(local_server: LocalServer) -> None:
    with client(local_server, key=KEY_A) as a, client(local_server, key=KEY_B) as b:
        url = upload(a, synth_wav("Mine.", 1.0))
        r = b.post("/v2/transcript", json={"audio_url": url, "speech_models": MODELS})
        assert r.status_code == 403
        # The spec lists 403 only on uploadFile; the body is its CannotAccessUploadedFile.
        body = validate_response("createTranscript", r, extra_status_ref="CannotAccessUploadedFile")
        assert body == {"error": "Cannot access uploaded file"}
        assert (
            a.post("/v2/transcript", json={"audio_url": url, "speech_models": MODELS}).status_code
            == 200
        )


@pytest.mark.parametrize(
    ("spec", "status", "json_body"),
    [
        (FaultSpec(p_429=1.0, retry_after_s=7), 429, True),
        (FaultSpec(p_500=1.0), 500, True),
        (FaultSpec(p_503=1.0), 503, False),
        (FaultSpec(p_504=1.0), 504, False),
    ],
    ids=["429", "500", "503", "504"],
)
def test_injected_faults_on_every_route_match_spec(
    make_server: Callable[..., LocalServer], spec: FaultSpec, status: int, json_body: bool
) -> None:
    srv = make_server(faults=FaultConfig(routes={"*": spec}))
    with client(srv) as c:
        for op, method, path in ROUTES:
            r = _call(c, method, path, "6b1a3c52-0000-4000-8000-000000000000")
            assert r.status_code == status, op
            body = validate_response(op, r)
            if json_body:
                assert isinstance(body, dict) and body["error"]
            else:
                assert body is None and r.headers["content-type"].startswith("text/html")
                with pytest.raises(ValueError):
                    r.json()
        if status == 429:
            assert r.headers["retry-after"] == "7"
    # The server counts a request once its response is sent, so the client may get the last
    # response a moment before the count moves: wait for the count, then check it exactly.
    stats = srv.wait_until(lambda s: sum(s["requests_by_status"].values()) >= len(ROUTES))
    assert stats["faults_total"] == len(ROUTES)
    assert stats["requests_by_status"] == {str(status): len(ROUTES)}


def test_rate_limit_429_matches_spec(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server(rate_limit=3, rate_window_s=120.0)
    with client(srv) as c:
        codes = [c.get("/v2/transcript").status_code for _ in range(3)]
        r = c.get("/v2/transcript")
    assert codes == [200, 200, 200]
    assert r.status_code == 429
    assert validate_response("listTranscripts", r) == {"error": "Too Many Requests"}
    assert 1 <= int(r.headers["retry-after"]) <= 120
    assert srv.stats()["rate_limited"] == 1
