"""A real ``prefect server start`` for a test: temp PREFECT_HOME, free port, no UI."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from voxlake import lifeline, postgres
from voxlake.errors import ServeError
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


def postgres_or_skip() -> None:
    """Skip the test unless this machine can run :mod:`voxlake.postgres`'s PostgreSQL."""
    try:
        postgres.bin_dir()
        postgres._as_server_user()
    except ServeError as exc:
        pytest.skip(f"no PostgreSQL to run on (`make postgresql` installs it): {exc}")


@contextmanager
def private_postgres(root: Path) -> Iterator[str]:
    """The PostgreSQL ``voxlake serve --database postgresql`` runs, with its files in ``root``
    (skips the test without one); its connection URL, for :func:`prefect_server`."""
    postgres_or_skip()
    process, url = postgres.start(root, os.environ)
    try:
        yield url
    finally:
        lifeline.stop(process)


@dataclass(frozen=True)
class DatabaseTemplate:
    """A Prefect SQLite database as a server leaves it just after its start (migrated, block
    types registered), for later servers of the session to start from.

    A new server's own migration is about 3 s of the 8-9 s of CPU its start takes (measured:
    8.0-9.4 s from an empty database, 5.2-5.7 s from a copy); the rest is importing Prefect.
    ``path`` is in the session's own temporary folder (``prefect_db_template``), so a template
    is never an earlier run's; it is written under another name and renamed into place, so a
    server copies a whole database or finds none and migrates its own, as before.
    """

    path: Path

    def copy_to(self, db: Path) -> bool:
        try:
            shutil.copyfile(self.path, db)
        except FileNotFoundError:
            return False
        return True

    def save(self, db: Path) -> None:
        """``db``, a running server's database just after its start, as the template (unless
        there is one). SQLite's backup API: a consistent copy of a database in use (WAL)."""
        if self.path.exists():
            return
        part = self.path.with_name(f"{self.path.name}.{os.getpid()}.part")
        # Read-only: a missing ``db`` is an error, never a new empty template.
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        copy = sqlite3.connect(part)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        os.replace(part, self.path)


@dataclass
class RunningServer:
    api_url: str
    env: dict[str, str]  # for clients of this server (PREFECT_API_URL set)
    process: subprocess.Popen[bytes]


@contextmanager
def prefect_server(
    tmp: Path,
    template: DatabaseTemplate | None = None,
    database_url: str | None = None,
    **server_env: str,
) -> Iterator[RunningServer]:
    """A server whose database starts as ``template`` (the session's), if there is one yet;
    else its own new database, which becomes the template. With ``database_url``, the
    PostgreSQL there instead (:func:`private_postgres`), which the server migrates itself
    (the template is SQLite's)."""
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
    home = tmp / "server-home"
    home.mkdir(parents=True, exist_ok=True)
    db = home / "prefect.db"  # Prefect's default database under PREFECT_HOME
    if database_url is not None:
        template = None
    copied = template is not None and template.copy_to(db)
    process = start_server(home, "127.0.0.1", port, env, database_url)
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        wait_until_healthy(api_url, process)
        if template is not None and not copied:
            template.save(db)
        yield RunningServer(api_url, {**env, "PREFECT_API_URL": api_url}, process)
    finally:
        lifeline.stop(process)


class _AgainOn503(httpx.BaseTransport):
    """Sends a request again while the server answers 503, as Prefect's own client does: a
    loaded Prefect server on SQLite answers 503 when it gave up waiting for the database lock,
    and the request changed nothing. Bounded by ``deadline_s``; then the 503 is the answer."""

    def __init__(self, deadline_s: float) -> None:
        self._inner = httpx.HTTPTransport()
        self._deadline_s = deadline_s

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self._deadline_s
        pause = 0.5
        while True:
            response = self._inner.handle_request(request)
            if response.status_code != 503 or time.monotonic() + pause > deadline:
                return response
            response.read()
            response.close()
            time.sleep(pause)  # a back-off before asking again, as Prefect's client waits
            pause = min(pause * 2, 8.0)

    def close(self) -> None:
        self._inner.close()


def prefect_api(base_url: str, *, timeout_s: float = 60, deadline_s: float = 120) -> httpx.Client:
    """An HTTP client of a test's Prefect API that retries 503s as Prefect's client does."""
    return httpx.Client(base_url=base_url, timeout=timeout_s, transport=_AgainOn503(deadline_s))
