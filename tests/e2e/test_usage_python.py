"""docs/usage.md's "From Python" snippet, run as written: a script in a fresh process.

It runs from a folder outside the checkout (only the installed package importable), with no
``ASSEMBLYAI_*`` variable set, reporting to the suite's Prefect API. Its ``data/manifest.csv``
holds two of the demo's clips rather than all thirteen: the snippet is the same, and real speech
recognition of the whole corpus would cost the suite minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from voxlake.lake.read import read_current

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def usage_snippet() -> str:
    text = (REPO / "docs" / "usage.md").read_text()
    section = text.split("## From Python", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "no python block under '## From Python'"
    return found.group(1)


@pytest.mark.timeout(600)
def test_the_usage_python_example_runs_as_written(tmp_path: Path, prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.csv").write_text(
        "source,media_id\n"
        f"{REPO / 'data/media/harvard-01.wav'},harvard-01\n"
        f"{REPO / 'data/media/harvard-03.mp3'},harvard-03\n"
    )
    script = tmp_path / "example.py"
    script.write_text(usage_snippet())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "VOXLAKE_"))}
    env.pop("PYTHONPATH", None)  # the checkout must not be what makes the imports work
    # A CLI test earlier in this worker process may have set it (voxlake run's quiet Prefect
    # defaults go into its own os.environ); a user's Python session starts without it.
    env.pop("PREFECT_LOGGING_LEVEL", None)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())

    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert output.count("Beginning flow run") == 1, output  # one run, none in worker processes
    assert "2/2 items transcribed" in done.stdout, output
    assert "upload 0/2" in done.stdout and "collect 2/2" in done.stdout, output  # on_progress
    current = read_current(tmp_path / "lake").select(["media_id", "status", "text"]).to_pylist()
    clips = {r["media_id"]: r for r in current}
    assert sorted(clips) == ["harvard-01", "harvard-03"]
    assert {r["status"] for r in clips.values()} == {"completed"}
    assert all(r["text"] for r in clips.values())
