"""`voxlake run` without a Prefect server: the temporary Prefect API it starts early.

Real processes end to end: the CLI as a subprocess (no PREFECT_API_URL anywhere, a fresh
PREFECT_HOME), the temporary Prefect API it spawns, the local AssemblyAI server over HTTP, and
Prefect's own SQLite database read back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import ANY

import psutil
import pyarrow.parquet as pq

from tests.support.flowkit import speech_clips, write_manifest
from tests.support.secrets import KEY_A
from voxlake.emulator import LocalServer
from voxlake.prefect_api import EXIT_NOT_NEEDED

# Generous: conditions are polled, so a deadline only bounds a failure.
DEADLINE_S = 60.0

REPO = Path(__file__).resolve().parents[2]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ASSEMBLYAI_"))}
    return env | {"PREFECT_HOME": str(home), **extra}


def _temporary_api_processes(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "voxlake.prefect_api" in (proc.info["cmdline"] or []) and proc.environ().get(
                "PREFECT_HOME"
            ) == str(home):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _run_watching_children(
    cmd: list[str], env: dict[str, str], logs: Path
) -> tuple[int, str, str, list[list[str]]]:
    """Run ``cmd``; return its exit status, stdout, stderr and the command line of every child
    process seen while it ran (sampled every 50 ms until it exits). Children only: their own
    short-lived helpers (Prefect's croniter runs ``file -b python`` at import) are not ours."""
    out, err = logs / "stdout.txt", logs / "stderr.txt"
    seen: dict[int, list[str]] = {}
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=stdout, stderr=stderr)
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


def test_run_without_a_prefect_server_records_every_task_run(
    tmp_path: Path, local_server: LocalServer
) -> None:
    manifest = write_manifest(tmp_path / "manifest.csv", speech_clips(tmp_path / "media", 6))
    home = tmp_path / "prefect-home"
    env = _env(home, ASSEMBLYAI_BASE_URL=local_server.base_url, ASSEMBLYAI_API_KEY=KEY_A)
    cmd = [sys.executable, "-m", "voxlake.cli", "run", str(manifest)]
    cmd += ["--output", str(tmp_path / "out"), "--no-progress", "--chunk-size", "2"]

    status, stdout, stderr, children = _run_watching_children(cmd, env, tmp_path)

    assert status == 0, stdout + stderr
    assert "6/6 completed" in stdout
    # The one process the run started is the temporary API: Prefect did not start its own
    # ephemeral server as well (it would be another child, for the whole flow run).
    assert children == [[sys.executable, "-m", "voxlake.prefect_api", ANY, ANY]], children
    assert "Traceback" not in stderr, stderr
    assert pq.read_table(tmp_path / "out" / "transcripts").num_rows == 6
    with sqlite3.connect(home / "prefect.db") as db:
        flow_runs = db.execute("select state_type from flow_run").fetchall()
        task_runs = db.execute("select name, state_type from task_run").fetchall()
        block_types = db.execute("select count(*) from block_type").fetchone()
    assert flow_runs == [("COMPLETED",)]
    # The run names no block, so its API registered none (importing prefect-aws and writing
    # them delayed the run's start).
    assert block_types == (0,)
    # 3 chunks x 4 stages, each recorded with its final state before the API stopped: a server
    # stopped while still recording would leave some missing or not final.
    assert len(task_runs) == 12
    assert {state for _, state in task_runs} == {"COMPLETED"}
    assert _temporary_api_processes(home) == []


def test_temporary_api_process_exits_when_an_api_is_configured(tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    home.mkdir()
    # Configured the way users do it, in the active profile rather than the environment.
    (home / "profiles.toml").write_text(
        'active = "remote"\n\n[profiles.remote]\nPREFECT_API_URL = "http://127.0.0.1:9/api"\n'
    )
    env = _env(home, PREFECT_PROFILES_PATH=str(home / "profiles.toml"))

    done = subprocess.run(
        [sys.executable, "-m", "voxlake.prefect_api", "0"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == EXIT_NOT_NEEDED, done.stderr
    assert not (home / "prefect.db").exists()


@contextmanager
def busy_cores() -> Iterator[list[subprocess.Popen[bytes]]]:
    """One busy-loop process per core (at least two), as a busy machine has."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(max(2, os.cpu_count() or 2))
    ]
    try:
        yield loops
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def _run_cmd(manifest: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "voxlake.cli", "run", str(manifest), "--output", str(output)]


def test_run_completes_while_both_cores_are_busy(tmp_path: Path, local_server: LocalServer) -> None:
    manifest = write_manifest(tmp_path / "manifest.csv", speech_clips(tmp_path / "media", 3))
    home = tmp_path / "prefect-home"
    env = _env(home, ASSEMBLYAI_BASE_URL=local_server.base_url, ASSEMBLYAI_API_KEY=KEY_A)
    cmd = [*_run_cmd(manifest, tmp_path / "out"), "--no-progress"]

    with busy_cores() as loops:
        done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=280)
        assert all(loop.poll() is None for loop in loops)  # the cores were busy throughout

    assert done.returncode == 0, done.stdout + done.stderr
    assert "3/3 completed" in done.stdout
    assert _temporary_api_processes(home) == []


def _wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S:g} s: {what}"
        time.sleep(0.05)  # polling another process's state, bounded by the deadline


def _listening(proc: psutil.Process) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN for c in proc.net_connections())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def test_kill_9_of_the_cli_leaves_no_process(
    tmp_path: Path, make_server: Callable[..., LocalServer]
) -> None:
    # Jobs that outlast the test, so the CLI is surely mid-run when it is killed.
    slow = make_server(processing_fixed_s=600.0)
    manifest = write_manifest(tmp_path / "manifest.csv", speech_clips(tmp_path / "media", 2))
    home = tmp_path / "prefect-home"
    env = _env(home, ASSEMBLYAI_BASE_URL=slow.base_url, ASSEMBLYAI_API_KEY=KEY_A)
    cli = subprocess.Popen(
        [*_run_cmd(manifest, tmp_path / "out"), "--no-progress"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        parent = psutil.Process(cli.pid)
        _wait_for(
            lambda: any(_listening(child) for child in parent.children(recursive=True)),
            "the CLI's temporary Prefect API listening",
        )
        children = parent.children(recursive=True)
        cli.kill()
        cli.wait()
        _wait_for(
            lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
            f"every child of the killed CLI gone: {children}",
        )
        assert _temporary_api_processes(home) == []
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
