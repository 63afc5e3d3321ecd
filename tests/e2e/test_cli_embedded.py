"""`voxlake run` with no AssemblyAI API configured: the embedded local server.

The CLI runs as a real process with no ``ASSEMBLYAI_*`` variable, reporting to the suite's
Prefect API. The embedded server's address and demo key reach the flow as its ``credentials``
argument (voxlake.runner), not through ``os.environ``; the progress bars are fed by the flow's
``on_progress`` callback (``voxlake.run.progress.Progress`` events).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from voxlake.lake.read import read_current
from voxlake.runner import api_backend

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _no_api_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "VOXLAKE_"))}


@pytest.mark.usefixtures("prefect_harness")
def test_run_without_a_key_uses_the_embedded_server_and_shows_progress(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "source,media_id\n"
        f"{REPO / 'data/media/harvard-01.wav'},harvard-01\n"
        f"{REPO / 'data/media/harvard-03.mp3'},harvard-03\n"
    )
    env = _no_api_env() | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "120"}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the embedded server's state, see below

    cmd = [sys.executable, "-m", "voxlake.cli", "run", str(manifest), "--output", "o"]

    done = subprocess.run(
        cmd,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "using the embedded local AssemblyAI-compatible server" in output
    assert "2/2 completed" in done.stdout, output
    # The bars, as rich leaves them on a non-terminal: every stage at 2 of 2.
    for stage in ("upload", "submit", "poll", "collect"):
        assert re.search(rf"{stage} .* 2/2 ", done.stdout), output
    statuses = read_current(tmp_path / "o").column("status").to_pylist()
    assert statuses == ["completed", "completed"]
    # Its jobs are kept on disk, one directory per output root (docs/local-server.md).
    assert len(list((tmp_path / "cache").glob("voxlake/embedded-server/*/transcripts/*"))) == 2


def test_the_embedded_backend_hands_over_credentials_and_writes_no_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [k for k in os.environ if k.startswith("ASSEMBLYAI_")]:
        monkeypatch.delenv(name)
    with api_backend() as endpoint:
        assert endpoint is not None
        assert not [k for k in os.environ if k.startswith("ASSEMBLYAI_")]
        client = endpoint.client()
    assert client.settings.base_url.startswith("http://127.0.0.1:")
    assert not [k for k in os.environ if k.startswith("ASSEMBLYAI_")]
