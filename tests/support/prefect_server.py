"""A real ``prefect server start`` for a test: temp PREFECT_HOME, free port, no UI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from voxlake import lifeline
from voxlake.serve import start_server, wait_until_healthy

REPO = Path(__file__).resolve().parents[2]


def prefect_cli(env: dict[str, str], *args: str) -> str:
    """``prefect ARGS`` from the checkout with ``env``; its stdout (fails the test on error)."""
    done = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without any Prefect or AssemblyAI setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ASSEMBLYAI_"))}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


@dataclass
class RunningServer:
    api_url: str
    env: dict[str, str]  # for clients of this server (PREFECT_API_URL set)
    process: subprocess.Popen[bytes]


@contextmanager
def prefect_server(tmp: Path, **server_env: str) -> Iterator[RunningServer]:
    port = free_port()
    env = clean_env(
        tmp / "client-home",
        PREFECT_UI_ENABLED="false",
        # SQLite under a loaded CI machine: wait for the database lock rather than fail a write
        # ("database is locked") after Prefect's default 10 s / 5 s.
        PREFECT_SERVER_DATABASE_TIMEOUT="60",
        PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT="60",
        **server_env,
    )
    process = start_server(tmp / "server-home", "127.0.0.1", port, env)
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_healthy(api_url, process)
        yield RunningServer(api_url, {**env, "PREFECT_API_URL": api_url}, process)
    finally:
        lifeline.stop(process)
