"""The sphinx engine: real recognition, word timings, posterior confidences, documented errors."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.secrets import KEY_A
from voxlake.emulator import EmulatorConfig, LocalServer
from voxlake.emulator.engines import EngineError, get_engine, resolve_engine_name
from voxlake.emulator.sphinx import SphinxEngine, format_words, model_name, recognise

pytestmark = pytest.mark.sphinx

DATA = Path(__file__).resolve().parents[3] / "data" / "media"


def test_auto_picks_sphinx_when_importable() -> None:
    assert resolve_engine_name("auto") == "sphinx"
    assert EmulatorConfig().engine == "auto"
    assert get_engine("auto").name == "sphinx"
    assert get_engine("scripted").name == "scripted"


def test_format_words() -> None:
    raw = [
        ("i've", 0, 200, 0.9, 0),
        ("got", 210, 400, 0.8, 0),
        ("it", 1000, 1200, 0.7, 0),  # a long pause before: a new sentence
        ("then", 1210, 1400, 0.6, 1),  # a new speech region: a new sentence
    ]
    text = [w[0] for w in format_words(raw, punctuate=True, format_text=True)]
    assert text == ["I've", "got.", "It.", "Then."]
    plain = [w[0] for w in format_words(raw, punctuate=False, format_text=False)]
    assert plain == ["i've", "got", "it", "then"]


def test_recognises_speech_with_timings_and_posteriors(caplog: pytest.LogCaptureFixture) -> None:
    path = DATA / "harvard-03.mp3"
    with caplog.at_level(logging.INFO, logger="voxlake.emulator.sphinx"):
        result = SphinxEngine().transcribe(path, {})
    text = " ".join(w.text for w in result.words)
    assert text[0].isupper() and text.endswith(".")
    lowered = text.lower()
    for phrase in ("the sun rose", "the clear spring", "back to her feet"):
        assert phrase in lowered
    assert result.speech_model_used == model_name() and "pocketsphinx" in model_name()
    assert result.language_code == "en_us"
    assert 11 < result.audio_duration < 12.5
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start < w.end <= result.audio_duration * 1000 + 50 for w in result.words)
    for w in result.words:
        assert not w.text.startswith(("<", "[")) and "(" not in w.text
    confidences = {w.confidence for w in result.words}
    assert all(0.0 <= c <= 1.0 for c in confidences)
    assert len(confidences) > 5  # from the lattice, never a constant
    # The engine's own time for the file, apart from the worker's start-up (benchmark B10).
    (line,) = [r.getMessage() for r in caplog.records if r.name == "voxlake.emulator.sphinx"]
    timing = r"recognised 1\d\.\d\d s of audio in (\d+\.\d{3}) s "
    timing += r"\(model loaded first in \d+\.\d{3} s\)"
    found = re.fullmatch(timing, line)
    assert found is not None and float(found.group(1)) > 0, line


def test_engine_workers_do_not_import_the_server() -> None:
    """A worker process imports ``voxlake.emulator.sphinx``; the server's libraries (uvicorn,
    FastAPI) are not its start-up, which the first file of a run waits for."""
    program = (
        "import sys, voxlake.emulator.sphinx; "
        "print([m for m in ('voxlake.emulator.server', 'uvicorn', 'fastapi') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_trim_window_and_speech_threshold() -> None:
    path = str(DATA / "harvard-03.mp3")
    full = recognise(path)
    part = recognise(path, start_ms=4000, end_ms=8000)
    assert part.duration_s == full.duration_s
    assert part.words and all(w[1] >= 3900 and w[2] <= 8100 for w in part.words)
    assert len(part.words) < len(full.words)
    engine = SphinxEngine()
    below = r"^Audio speech threshold 0\.0000 is below the requested speech threshold value 0\.5$"
    with pytest.raises(EngineError, match=below):
        engine.transcribe(DATA / "silence.wav", {"speech_threshold": 0.5})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("too-short.wav", "Audio duration is too short."),
        (
            "not-really-audio.mp3",
            "File does not appear to contain audio. File type is text/plain (ASCII text).",
        ),
    ],
)
def test_documented_errors(name: str, message: str) -> None:
    with pytest.raises(EngineError) as err:
        SphinxEngine().transcribe(DATA / name, {})
    assert err.value.message == message


def test_silence_completes_with_no_words() -> None:
    result = SphinxEngine().transcribe(DATA / "silence.wav", {})
    assert result.words == [] and result.audio_duration == pytest.approx(2.0)


def test_server_stays_responsive_while_recognising(
    make_server: Callable[..., LocalServer],
) -> None:
    server = make_server(engine="sphinx", concurrency_limit=2)
    headers = {"authorization": KEY_A}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as c:
        url = c.post("/v2/upload", content=(DATA / "harvard-10.m4a").read_bytes()).json()
        tid = c.post(
            "/v2/transcript",
            json={"audio_url": url["upload_url"], "speech_models": ["universal-2"]},
        ).json()["id"]
        server.wait_until(lambda s: s["processing"] >= 1, timeout=30)
        # Answered while the minute of audio is still being recognised: recognition runs in
        # worker processes, off the server's event loop. (How fast such a GET is depends on
        # the machine: benchmarks/sphinx_long_audio.py measures it.)
        during = c.get(f"/v2/transcript/{tid}")
        assert during.status_code == 200 and during.json()["status"] == "processing"
        assert server.wait_for_transcript(tid, timeout=240) == "completed"
        body = c.get(f"/v2/transcript/{tid}").json()
    assert body["status"] == "completed", body.get("error")
    assert body["speech_model_used"].startswith("pocketsphinx-")
    assert body["audio_duration"] == 61
    assert 0 < body["confidence"] < 1
    assert body["confidence"] == pytest.approx(
        sum(w["confidence"] for w in body["words"]) / len(body["words"]), abs=1e-3
    )
