"""The wheel holds what ``voxlake run`` needs: built, installed alone into a fresh virtual
environment (the locked dependencies, from uv's cache), and used from outside the checkout.

Offline: it needs only what ``make setup`` (``uv sync --locked``) put in uv's cache, even on a
machine whose cache was empty before it. A few seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _uv() -> str:
    # `uv run` (and so `make test`) names its own binary in UV.
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.skip("uv not found: run the suite through `uv run` (make test)")
    return found


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_alone_runs_the_cli_and_finds_the_flows(tmp_path: Path) -> None:
    uv = _uv()
    dist = tmp_path / "dist"
    _run([uv, "build", "--offline", "--wheel", "--out-dir", str(dist), str(REPO)], REPO)
    (wheel,) = dist.glob("voxlake-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    # voxlake alone: top-level flows/ or blocks/ packages would collide with other projects'.
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"voxlake", wheel.name.split("-py3")[0] + ".dist-info"}, top
    assert {"voxlake/flows/transcribe.py", "voxlake/sql/views.sql"} <= names

    # The locked dependencies (no dev group), then the wheel, which must need nothing more.
    # `uv sync` installs them from the lock file's URLs, which `make setup` (uv sync --locked)
    # left in uv's cache; `uv pip install -r <exported requirements>` resolved against the
    # index pages instead, which only a warm cache held offline ("aiosqlite was not found in
    # the cache") on a machine where only `make setup` had run.
    venv = tmp_path / "venv"
    sync = [uv, "sync", "--frozen", "--offline", "--no-dev", "--no-install-project", "--quiet"]
    _run(
        [*sync, "--python", sys.executable],
        REPO,
        {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        | {"UV_PROJECT_ENVIRONMENT": str(venv)},
    )
    python = venv / "bin" / "python"
    install = [uv, "pip", "install", "--quiet", "--offline", "--python", str(python)]
    _run([*install, str(wheel)], tmp_path)

    # From a folder that is not the checkout, with nothing of it on the path.
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    assert "Transcribe every item of MANIFEST" in _run(
        [str(venv / "bin" / "voxlake"), "run", "--help"], away, env
    )
    where = _run(
        [
            str(python),
            "-c",
            "import importlib.util, voxlake, voxlake.runner, voxlake.flows.transcribe, "
            "voxlake.flows.backfill; print(voxlake.__file__); "
            "print(importlib.util.find_spec('flows'))",
        ],
        away,
        env,
    ).split()
    assert where[0].startswith(str(venv)), where
    assert where[1] == "None", where
