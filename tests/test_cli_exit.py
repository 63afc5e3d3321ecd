"""The ``voxlake`` command leaves without finalising every module, yet exits as Python does.

``voxlake.cli.main`` runs the interpreter's first steps of exiting itself (threading's exit
handlers and the wait for non-daemon threads, then atexit's handlers), flushes and calls
``os._exit``. These tests hold it to that: the handlers run in Python's order, threads are
waited for, exit statuses and messages are Python's, and a flow run's logs, which Prefect sends
from an exit handler, reach the Prefect server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A command whose exit is watched: what each handler and thread did is printed, in order.
_PROGRAM = textwrap.dedent(
    """
    import atexit, sys, threading, time
    import typer
    import voxlake.cli as cli

    def worker():
        time.sleep(0.3)
        print("thread finished", flush=True)

    @cli.app.command("probe-exit")
    def probe_exit(code: str = "0") -> None:
        atexit.register(lambda: print("atexit handler", flush=True))
        threading._register_atexit(lambda: print("threading handler", flush=True))
        threading.Thread(target=worker).start()
        print("buffered output", end="")  # left for the exit to flush
        if code == "message":
            sys.exit("a message for stderr")
        raise typer.Exit(int(code))

    cli.main()
    """
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM, "probe-exit", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )


@pytest.mark.parametrize("code", [0, 1, 2])
def test_exit_runs_python_exit_steps_in_order_and_keeps_the_status(code: int) -> None:
    done = _run("--code", str(code))

    assert done.returncode == code, done.stderr
    # Threading's handlers run before the threads are waited for, atexit's after: as Python.
    assert done.stdout.splitlines() == [
        "buffered outputthreading handler",
        "thread finished",
        "atexit handler",
    ], done.stdout + done.stderr


def test_exit_with_a_message_prints_it_with_status_1() -> None:
    done = _run("--code", "message")

    assert done.returncode == 1
    assert done.stderr.strip().endswith("a message for stderr"), done.stderr
    assert "atexit handler" in done.stdout


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


@pytest.mark.usefixtures("prefect_harness")
def test_a_flow_runs_logs_reach_the_prefect_server_before_the_command_exits(
    tmp_path: Path,
) -> None:
    """Prefect sends a run's logs in batches from a thread, the last ones from its exit
    handler: a flow run that fails at once (an empty manifest folder) has logged an error
    just before the command leaves."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "no-media").mkdir()
    output = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "VOXLAKE_"))}
    # The embedded server's state directory goes under the test's own cache.
    env |= {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "XDG_CACHE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "voxlake.cli", "run", str(tmp_path / "no-media")]
    cmd += ["--output", str(output), "--no-progress"]

    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=280)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "no media files found" in done.stderr

    async def logs_of_the_run() -> list[str]:
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
            (run,) = [r for r in runs if r.parameters.get("output") == str(output)]
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
            )
        return [log.message for log in logs]

    messages = asyncio.run(logs_of_the_run())
    assert any("no media files found" in m for m in messages), messages
