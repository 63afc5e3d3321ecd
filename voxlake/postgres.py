"""A PostgreSQL for the Prefect server that ``voxlake serve --database postgresql`` starts.

SQLite serializes every write of the Prefect server: with several flow runs at once its calls
wait for the database lock (B7 in benchmarks/RESULTS.md saw one ``rate_limit`` call wait 61.9 s
and ``database is locked``). PostgreSQL is Prefect's database for concurrent work. This module
runs one from the machine's own installation (Debian's ``postgresql`` package, which ``make
postgresql`` installs), with everything under one folder, ``.voxlake/postgres/`` by default:

- ``data/``: the cluster, made by ``initdb`` at the first start and kept across starts;
- ``password``: its superuser's password (``voxlake``), generated then, readable by the owner
  only; connections come over TCP on 127.0.0.1 and need it (scram-sha-256), so another local
  user cannot read Prefect's database, which holds the blocks' encrypted secrets and their key;
- ``postgres.log``: the server's log.

Each start takes a free loopback port (no Unix socket: a socket path under a deep checkout can
pass the kernel's 107-byte limit) and creates the database ``prefect`` if it is missing. The
server runs under :mod:`voxlake.lifeline` like ``voxlake serve``'s other children, so it stops
when serve stops, ``kill -9`` included (SIGTERM is PostgreSQL's "smart" shutdown; the Prefect
server, its only client, is stopped first).

**Root.** ``initdb`` and ``postgres`` refuse to run as root. As root they run as the system
user ``postgres`` (the Debian package creates it), which owns ``data/``; with the capability
``CAP_DAC_READ_SEARCH`` (``setpriv``), and no other, so that it reaches a folder under
root-only parents (``/root``, pytest's ``/tmp/pytest-of-root``) and reads the password file
without either being opened to every user.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from voxlake import lifeline
from voxlake.serve import POLL_S, STARTUP_TIMEOUT_S, ServeError

URL_ENV = "PREFECT_API_DATABASE_CONNECTION_URL"
USER = "voxlake"
DATABASE = "prefect"
SYSTEM_USER = "postgres"  # who runs the server when voxlake runs as root
INSTALL_HINT = (
    "`make postgresql` installs Debian's package (as root with apt-get); elsewhere install "
    "PostgreSQL and put its bin folder (with initdb and postgres) on the PATH"
)


def is_postgresql_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgresql+asyncpg://"))


def bin_dir() -> Path:
    """The folder of ``initdb`` and ``postgres``: Debian keeps them out of the PATH, under
    ``/usr/lib/postgresql/<major>/bin`` (the newest major wins), else ``pg_config --bindir``,
    else the PATH."""

    def major(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)/bin", path)
        return int(found.group(1)) if found else -1

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(done.stdout.strip())
    on_path = shutil.which("postgres")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for candidate in candidates:
        folder = Path(candidate)
        if candidate and (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise ServeError(f"--database postgresql: PostgreSQL is not installed: {INSTALL_HINT}.")


def _as_server_user() -> tuple[list[str], int | None]:
    """The command prefix that runs PostgreSQL's programs, and the uid that owns the data
    folder (None: this process's own)."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise ServeError(
            f"--database postgresql as root: PostgreSQL refuses to run as root, and there is "
            f"no '{SYSTEM_USER}' user to run it as ({INSTALL_HINT}); or run voxlake serve as "
            f"a normal user."
        ) from None
    setpriv = shutil.which("setpriv") or "setpriv"
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    prefix += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return prefix, user.pw_uid


def _free_port() -> int:
    # Free now; taken by another process before postgres binds it, postgres exits and
    # wait_until_ready says so with its log.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def init_cluster(root: Path, env: Mapping[str, str]) -> None:
    """``initdb`` into ``root/data`` unless a cluster is there; the password in ``root``."""
    data, password = root / "data", root / "password"
    if (data / "PG_VERSION").exists():
        if not password.exists():
            raise ServeError(
                f"the PostgreSQL cluster in {data} has no password file {password}: delete "
                f"{root} to start with a new, empty database"
            )
        return
    prefix, owner = _as_server_user()
    root.mkdir(parents=True, exist_ok=True)
    password.touch(mode=0o600)
    password.write_text(secrets.token_urlsafe(24))
    data.mkdir(mode=0o700, exist_ok=True)
    if owner is not None:
        os.chown(data, owner, -1)
    cmd = [*prefix, str(bin_dir() / "initdb"), "--pgdata", str(data.resolve())]
    cmd += ["--username", USER, "--pwfile", str(password.resolve()), "--auth", "scram-sha-256"]
    cmd += ["--encoding", "UTF8", "--no-instructions"]
    done = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServeError(f"initdb failed (status {done.returncode}):\n{done.stderr.strip()}")


def _url(port: int, password: str, database: str = DATABASE) -> str:
    return f"postgresql+asyncpg://{USER}:{password}@127.0.0.1:{port}/{database}"


def shown_url(url: str) -> str:
    """``url`` without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


async def _create_database(port: int, password: str) -> bool:
    """Create :data:`DATABASE` if missing; False while the server does not accept connections."""
    import asyncpg  # type: ignore[import-untyped]  # Prefect's driver, installed with it

    try:
        connection = await asyncpg.connect(
            host="127.0.0.1", port=port, user=USER, password=password, database="postgres"
        )
    except (OSError, asyncpg.CannotConnectNowError):  # not listening yet, or still starting
        return False
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await connection.close()
    return True


def start(root: Path, env: Mapping[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start PostgreSQL with its files in ``root`` (see the module doc), under the lifeline;
    its process and the connection URL for Prefect (with the password: never print it, see
    :func:`shown_url`)."""
    root = root.resolve()
    init_cluster(root, env)
    prefix, _ = _as_server_user()
    port = _free_port()
    cmd = [*prefix, str(bin_dir() / "postgres"), "-D", str(root / "data"), "-p", str(port)]
    cmd += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
    log_path = root / "postgres.log"
    with log_path.open("ab") as log:
        process = lifeline.start(cmd, env=env, stdout=log, stderr=log)
    password = (root / "password").read_text().strip()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not asyncio.run(_create_database(port, password)):
        if process.poll() is not None or time.monotonic() > deadline:
            said = "exited" if process.returncode is not None else "did not start in time"
            lifeline.stop(process)
            tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
            raise ServeError(f"PostgreSQL {said} (log {log_path}):\n" + "\n".join(tail))
        time.sleep(POLL_S)
    return process, _url(port, password)
