"""Small helpers shared by the emulator tests."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.secrets import KEY_A
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import synth_wav

MODELS = ["universal-3-pro", "universal-2"]
SCRIPT = (
    "Wildfires in Canada are sending smoke south. Air quality alerts went out today. "
    "Experts at Johns Hopkins said the smoke is unhealthy. People should stay inside. "
    "Where is the smoke going next? Forecasters expect it to drift east."
)


def client(srv: LocalServer, key: str | None = KEY_A, **kw: Any) -> httpx.Client:
    headers = {"authorization": key} if key is not None else {}
    return httpx.Client(base_url=srv.base_url, headers=headers, timeout=30.0, **kw)


def upload(c: httpx.Client, data: bytes) -> str:
    r = c.post("/v2/upload", content=data)
    assert r.status_code == 200, r.text
    return r.json()["upload_url"]


def submit(c: httpx.Client, audio_url: str, **params: Any) -> dict[str, Any]:
    r = c.post("/v2/transcript", json={"audio_url": audio_url, "speech_models": MODELS, **params})
    assert r.status_code == 200, r.text
    return r.json()


def transcribe(
    srv: LocalServer, c: httpx.Client, text: str | None = SCRIPT, duration: float = 12.0, **p: Any
) -> dict[str, Any]:
    """Upload a synthetic WAV, submit, wait (on server state, not sleeps) and fetch."""
    t = submit(c, upload(c, synth_wav(text, duration)), **p)
    srv.wait_for_transcript(t["id"])
    r = c.get(f"/v2/transcript/{t['id']}")
    assert r.status_code == 200
    return r.json()


@contextlib.contextmanager
def serve_local_process(upload_dir: Path, key: str = KEY_A) -> Iterator[tuple[int, str]]:
    """``voxlake serve-local`` as its own process, on a port it picks; yields (pid, base URL).

    For measuring one side alone (the server's memory, or the client's without the server's).
    """
    cmd = [sys.executable, "-m", "voxlake.cli", "serve-local", "--port", "0"]
    cmd += ["--upload-dir", str(upload_dir), "--log-level", "WARNING"]
    env = {**os.environ, "VOXLAKE_LOCAL_API_KEYS": key}
    # Popen as a context manager closes the pipe and waits for the process once it is stopped.
    out, err = subprocess.DEVNULL, subprocess.PIPE
    with subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True) as proc:
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:  # reads stderr to the end, so the server never blocks on a full pipe
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.put(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            announced = re.compile(r"local server on (http://127\.0\.0\.1:\d+)")
            while not (m := announced.search(lines.get(timeout=60))):
                pass
            yield proc.pid, m.group(1)
        finally:
            proc.terminate()
            proc.wait(timeout=15)
            reader.join(timeout=15)  # EOF once the process is gone; then the pipe can close
