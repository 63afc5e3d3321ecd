"""The ``voxlake`` command exits as Python does: click's statuses, and a flow run's logs, which
Prefect sends from an exit handler, reach the Prefect server before the command is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from voxlake.emulator import LocalServer
from voxlake.emulator.synth import write_synth_wav

REPO = Path(__file__).resolve().parents[2]


def test_usage_errors_keep_click_status() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "no-such-command"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "No such command" in done.stderr


def test_serve_local_on_a_state_dir_in_use_says_so_in_one_line_and_exits_2(
    tmp_path: Path, make_server: Callable[..., LocalServer]
) -> None:
    """The local server's own error reaches the user as a VoxlakeError does (cli.exit_status)."""
    make_server(state_dir=tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "serve-local", "--port=0", f"--state-dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "in use by another process" in last


@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_runs_logs_reach_the_prefect_server_before_the_command_exits(
    tmp_path: Path,
) -> None:
    """Prefect sends a run's logs in batches from a thread, the last ones from its exit
    handler: a flow run that fails at once (its output is a file) has logged an error just
    before the command leaves. (The terminal shows that error once, from the command.)"""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "media").mkdir()
    write_synth_wav(tmp_path / "media" / "a.wav", "the birch canoe", 0.5, sample_rate=8000)
    output = tmp_path / "out"
    output.write_text("a file, not a folder")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "VOXLAKE_"))}
    # The embedded server's state directory goes under the test's own cache.
    env |= {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "XDG_CACHE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "voxlake.cli", "run", str(tmp_path / "media")]
    cmd += ["--output", str(output), "--no-progress"]

    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=280)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("is a file, not a folder") == 1, done.stderr

    async def logs_of_the_run() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
            (run,) = [r for r in runs if r.parameters.get("output") == str(output)]
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
            )
        return [log.message for log in logs]

    messages = asyncio.run(logs_of_the_run())
    assert any("is a file, not a folder" in m for m in messages), messages
