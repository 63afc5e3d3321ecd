"""Fault injection, stats, logging hygiene, config parsing, synth and the scripted engine."""

from __future__ import annotations

import io
import logging
import threading
import wave
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.emulator.helpers import MODELS, client, submit, upload
from tests.support.secrets import KEY_A, KEY_B
from voxlake.emulator import DEFAULT_API_KEY, FaultConfig, FaultSpec, LocalServer, key_fingerprint
from voxlake.emulator.config import (
    EmulatorConfig,
    faults_from_env,
    parse_fault_flag,
)
from voxlake.emulator.engines import EngineError, ScriptedEngine
from voxlake.emulator.media import read_riff_text
from voxlake.emulator.synth import synth_wav, write_synth_wav


def test_reset_cuts_the_response_after_headers(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server(faults=FaultConfig(routes={"transcript_create": FaultSpec(p_reset=1.0)}))
    with client(srv) as c:
        url = upload(c, synth_wav("Reset.", 1.0))
        with pytest.raises(httpx.RemoteProtocolError):
            c.post("/v2/transcript", json={"audio_url": url, "speech_models": MODELS})
        stats = srv.wait_until(lambda s: s["requests_by_route"].get("transcript_create") == 1)
        # The job was created even though the client never saw the answer.
        assert c.get("/v2/transcript").json()["page_details"]["result_count"] == 1
    assert stats["faults_injected"] == {"transcript_create": {"reset": 1}}
    assert stats["requests_by_status"]["reset"] == 1


def test_seeded_faults_are_deterministic_and_counted(
    make_server: Callable[..., LocalServer],
) -> None:
    def run() -> tuple[list[int], dict]:
        faults = FaultConfig(
            routes={"transcript_list": FaultSpec(p_503=0.3, p_500=0.2, latency_s=0.001)}, seed=42
        )
        srv = make_server(faults=faults)
        with client(srv) as c:
            codes = [c.get("/v2/transcript").status_code for _ in range(40)]
            c.get("/v2/transcript/6b1a3c52-0000-4000-8000-000000000000")  # other route: clean
        srv.stop()
        return codes, srv.stats()

    codes1, stats = run()
    codes2, _ = run()
    assert codes1 == codes2
    assert {500, 503, 200} <= set(codes1)
    injected = stats["faults_injected"]["transcript_list"]
    assert injected.get("p503", 0) == codes1.count(503)
    assert injected.get("p500", 0) == codes1.count(500)
    assert stats["faults_total"] == codes1.count(503) + codes1.count(500)
    assert stats["requests_by_status"]["404"] == 1


def test_stats_long_poll_and_fingerprints(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server()
    with client(srv) as c, client(srv, key=KEY_B) as b:
        version = c.get("/_voxlake/stats").json()["version"]
        got: list[dict] = []
        waiter = threading.Thread(
            target=lambda: got.append(
                httpx.get(
                    f"{srv.base_url}/_voxlake/stats", params={"since": version, "timeout": 10}
                ).json()
            )
        )
        waiter.start()
        submit(c, upload(c, synth_wav("Hi there.", 1.0)))
        submit(b, upload(b, synth_wav("Hi there.", 1.0)))
        waiter.join(timeout=10)
        stats = srv.wait_until(lambda s: s["completed"] == 2)
    assert got and got[0]["version"] > version
    assert stats["submissions_by_key"] == {key_fingerprint(KEY_A): 1, key_fingerprint(KEY_B): 1}
    text = str(stats)
    assert KEY_A not in text and KEY_B not in text
    assert stats["upload_bytes"] > 0 and stats["max_concurrent_processing"] >= 1


def test_logs_never_contain_keys_or_webhook_secrets(
    local_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Prefect's logging setup (if imported earlier in the session) stops "uvicorn" records
    # at WARNING and keeps them off the root logger; undo that here to inspect the access log.
    uv = logging.getLogger("uvicorn")
    saved = (uv.propagate, uv.level)
    uv.propagate, uv.level = True, logging.NOTSET
    try:
        _exercise_logging(local_server)
    finally:
        uv.propagate, uv.level = saved
    access = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert access, "uvicorn access records must reach the root logger"
    joined = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY_A not in joined and "hook-secret-xyz" not in joined
    assert "authorization" not in "\n".join(access).lower()
    cfg = EmulatorConfig(api_keys=[KEY_A])
    assert KEY_A not in repr(cfg) and KEY_A not in str(cfg.api_keys)


def _exercise_logging(local_server: LocalServer) -> None:
    with client(local_server) as c:
        t = submit(
            c,
            upload(c, b"text"),
            webhook_url="http://127.0.0.1:9/hook",
            webhook_auth_header_name="X-S",
            webhook_auth_header_value="hook-secret-xyz",
        )
        local_server.wait_for_transcript(t["id"])
        c.get("/v2/transcript", headers={"authorization": "not-a-key"})


def test_default_demo_key(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server(api_keys=[])
    with client(srv, key=DEFAULT_API_KEY) as c:
        assert c.get("/v2/transcript").status_code == 200
    with client(srv, key=KEY_A) as c:
        assert c.get("/v2/transcript").status_code == 401


def test_fault_flag_and_env_parsing() -> None:
    assert parse_fault_flag("transcript_get:p503=0.2,latency=0.01") == {
        "transcript_get": {"p_503": 0.2, "latency_s": 0.01}
    }
    assert parse_fault_flag("reset=0.1") == {"*": {"p_reset": 0.1}}
    env = {"VOXLAKE_FAULT_P503": "0.2", "VOXLAKE_FAULT_UPLOAD__RESET": "0.5", "OTHER": "1"}
    parsed = faults_from_env(env)
    assert parsed == {"*": {"p_503": 0.2}, "upload": {"p_reset": 0.5}}
    cfg = FaultConfig(seed=3).merged(parsed)
    assert cfg.for_route("upload") == FaultSpec(p_reset=0.5)
    assert cfg.for_route("transcript_get") == FaultSpec(p_503=0.2)
    with pytest.raises(ValueError):
        parse_fault_flag("nowhere:p503=0.1") and FaultConfig().merged(
            parse_fault_flag("nowhere:p503=0.1")
        )
    with pytest.raises(ValueError):
        parse_fault_flag("upload:p999=1")
    with pytest.raises(ValueError):
        FaultSpec(p_500=0.7, p_503=0.7)


def test_cli_help_lists_serve_local() -> None:
    from typer.testing import CliRunner

    from voxlake.cli import app

    result = CliRunner().invoke(app, ["serve-local", "--help"])
    assert result.exit_code == 0
    for flag in ("--api-key", "--concurrency", "--fault", "--seed", "--upload-ttl", "--rate-limit"):
        assert flag in result.output


def test_synth_wav_is_valid_and_deterministic(tmp_path: Path) -> None:
    data = synth_wav("Héllo wörld.", 1.5, seed=3)
    assert data == synth_wav("Héllo wörld.", 1.5, seed=3)
    assert data != synth_wav("Héllo wörld.", 1.5, seed=4)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000)
        assert w.getnframes() == 24000
    path = write_synth_wav(tmp_path / "a.wav", "Héllo wörld.", 1.5, seed=3)
    assert path.read_bytes() == data
    assert read_riff_text(path) == "Héllo wörld."
    assert read_riff_text(write_synth_wav(tmp_path / "b.wav", None, 0.5)) is None


def test_scripted_engine_sources_and_errors(tmp_path: Path) -> None:
    eng = ScriptedEngine()
    plain = write_synth_wav(tmp_path / "talk.wav", None, 8.0, seed=1)
    generated = eng.transcribe(plain, {})
    assert generated.audio_duration == 8.0
    assert 15 <= len(generated.words) <= 25  # ~2.5 words/s
    assert eng.transcribe(plain, {}) == generated  # deterministic
    assert all(0.0 <= w.confidence <= 1.0 for w in generated.words)
    (tmp_path / "talk.wav.txt").write_text("From the sidecar file.")
    assert [w.text for w in eng.transcribe(plain, {}).words] == ["From", "the", "sidecar", "file."]
    html = tmp_path / "page.mp3"
    html.write_text("<html><body>hi</body></html>")
    with pytest.raises(EngineError, match="File type is text/html"):
        eng.transcribe(html, {})
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(EngineError, match=r"application/octet-stream \(data\)"):
        eng.transcribe(binary, {})
    short = write_synth_wav(tmp_path / "short.wav", "Hi.", 0.15)
    with pytest.raises(EngineError, match=r"^Audio duration is too short\.$"):
        eng.transcribe(short, {})
