"""`voxlake run` and Prefect: in-process without a configured API, a flow run with one.

Real processes end to end: the CLI as a subprocess, the local AssemblyAI server over HTTP, and
for the second test the session's Prefect server, read back through its API.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import psutil
import pyarrow.parquet as pq

from tests.support.flowkit import speech_clips, write_manifest
from tests.support.prefect_server import clean_env
from tests.support.secrets import KEY_A
from voxlake.emulator import LocalServer

REPO = Path(__file__).resolve().parents[2]
# Generous: conditions are polled, so a deadline only bounds a failure.
DEADLINE_S = 60.0

# Runs the CLI as `python -m voxlake.cli` does, then says on stderr whether Prefect was imported.
WATCHED = """\
import atexit, runpy, sys
def said():
    imported = any(m == "prefect" or m.startswith("prefect.") for m in sys.modules)
    print("PREFECT IMPORTED" if imported else "PREFECT NOT IMPORTED", file=sys.stderr)
atexit.register(said)
sys.argv = ["voxlake", *sys.argv[1:]]
runpy.run_module("voxlake.cli", run_name="__main__")
"""


def _run_watching_children(
    cmd: list[str], env: dict[str, str], cwd: Path, logs: Path
) -> tuple[int, str, str, list[list[str]]]:
    """Run ``cmd``; return its exit status, stdout, stderr and the command line of every child
    process seen while it ran (sampled every 50 ms until it exits)."""
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    seen: dict[int, list[str]] = {}
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
    root = psutil.Process(proc.pid)
    deadline = time.monotonic() + 300
    while True:
        with contextlib.suppress(psutil.Error):
            for child in root.children(recursive=False):
                with contextlib.suppress(psutil.Error):
                    seen.setdefault(child.pid, child.cmdline())
        try:
            proc.wait(timeout=0.05)
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                proc.kill()
                raise
    return proc.returncode, out.read_text(), err.read_text(), list(seen.values())


def test_without_a_prefect_api_the_run_imports_no_prefect_and_starts_no_process(
    tmp_path: Path, local_server: LocalServer
) -> None:
    manifest = write_manifest(tmp_path / "manifest.csv", speech_clips(tmp_path / "media", 6))
    home = tmp_path / "prefect-home"
    env = clean_env(home, ASSEMBLYAI_BASE_URL=local_server.base_url, ASSEMBLYAI_API_KEY=KEY_A)
    cmd = [sys.executable, "-c", WATCHED, "run", str(manifest)]
    cmd += ["--output", str(tmp_path / "out"), "--no-progress", "--chunk-size", "2"]

    # From an empty folder: no .env, prefect.toml or pyproject.toml there names an API.
    status, stdout, stderr, children = _run_watching_children(cmd, env, tmp_path, tmp_path)

    assert status == 0, stdout + stderr
    assert "6/6 completed" in stdout
    assert "PREFECT NOT IMPORTED" in stderr, stderr
    assert children == [], children  # no temporary Prefect API, nor Prefect's own
    assert not home.exists()  # nothing of Prefect's written either
    assert "Traceback" not in stderr, stderr
    assert pq.read_table(tmp_path / "out" / "transcripts").num_rows == 6


def test_with_an_api_in_the_active_profile_the_run_is_a_flow_run_there(
    tmp_path: Path, local_server: LocalServer, prefect_url: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    manifest = write_manifest(tmp_path / "manifest.csv", speech_clips(tmp_path / "media", 6))
    home = tmp_path / "prefect-home"
    home.mkdir()
    # Configured the way users do it (prefect config set), in the active profile.
    (home / "profiles.toml").write_text(
        f'active = "mine"\n\n[profiles.mine]\nPREFECT_API_URL = "{prefect_url}"\n'
    )
    env = clean_env(home, ASSEMBLYAI_BASE_URL=local_server.base_url, ASSEMBLYAI_API_KEY=KEY_A)
    output = tmp_path / "out"
    cmd = [sys.executable, "-m", "voxlake.cli", "run", str(manifest)]
    cmd += ["--output", str(output), "--no-progress", "--chunk-size", "2"]

    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=280)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "6/6 completed" in done.stdout
    # The run's id names its report, and is the flow run's id on that server.
    (report,) = (output / "reports").glob("*.html")
    flow_run_id = UUID(report.stem)

    async def recorded() -> tuple[StateType | None, int]:
        async with get_client() as client:
            flow_run = await client.read_flow_run(flow_run_id)
            final = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])),
                task_run_filter=TaskRunFilter(
                    state=TaskRunFilterState(
                        type=TaskRunFilterStateType(any_=[StateType.COMPLETED])
                    )
                ),
            )
        return flow_run.state_type, len(final)

    # Task-run states reach the server as events, recorded a moment after the CLI exits.
    deadline = time.monotonic() + DEADLINE_S
    while (state := asyncio.run(recorded())) != (StateType.COMPLETED, 12):
        assert time.monotonic() < deadline, state
        time.sleep(0.2)  # polling the server's records, bounded by the deadline
