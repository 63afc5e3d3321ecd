"""``voxlake serve``: everything scheduled runs and backfills need, on one machine.

1. the Prefect API: the one configured (``PREFECT_API_URL``, env or profile), else a
   persistent ``prefect server start`` whose database lives in ``--home``
   (``.voxlake/prefect`` under the current folder by default);
2. the process work pool (``voxlake``), the shared AssemblyAI request limit
   (:mod:`voxlake.shared_budget`; its figures model ``VOXLAKE_ACCOUNT_RATE_LIMIT`` when set) and
   the block types (:mod:`voxlake.credentials`);
3. the deployments of ``deployments/prefect.yaml`` (``prefect deploy --all``);
4. one worker on the pool; then it prints the UI address and the backfill command, and runs
   until interrupted.

**Nothing left behind.** The server, ``prefect deploy`` and the worker run under
:mod:`voxlake.lifeline`'s watchdog: they stop when ``voxlake serve`` stops, however it stops,
``kill -9`` included, and so do the processes they started (a worker's flow runs).

**No open doors.** A Prefect server hands block secrets back to any client of its API, so the
server started here binds 127.0.0.1 unless told otherwise, and binding any other address needs
basic auth: ``PREFECT_SERVER_API_AUTH_STRING=user:password`` in the environment (clients and
workers then send it as ``PREFECT_API_AUTH_STRING``). Without it, ``voxlake serve`` refuses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from voxlake import lifeline
from voxlake.errors import VoxlakeError
from voxlake.steps import project_directory

DEFAULT_HOME = Path(".voxlake/prefect")
DEFAULT_PORT = 4200
POOL = "voxlake"
PREFECT_FILE = "deployments/prefect.yaml"
SERVER_AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_AUTH_ENV = "PREFECT_API_AUTH_STRING"
# A server's first start migrates its database; generous for a busy 2-core machine.
STARTUP_TIMEOUT_S = 180.0
POLL_S = 0.2


class ServeError(VoxlakeError):
    """``voxlake serve`` cannot go on; the message says what to do."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, env: Mapping[str, str]) -> None:
    """Refuse a non-loopback bind without basic auth (block secrets are served to any client)."""
    if is_loopback(host) or env.get(SERVER_AUTH_ENV):
        return
    raise ServeError(
        f"refusing to serve the Prefect API on {host} without authentication: anyone who can "
        f"reach it could read the stored AssemblyAI and AWS credentials. Set "
        f"{SERVER_AUTH_ENV}='user:long-random-password' (workers and clients then set "
        f"{CLIENT_AUTH_ENV} to the same value), or bind 127.0.0.1."
    )


def _basic_auth(auth_string: str | None) -> tuple[str, str] | None:
    if not auth_string:
        return None
    user, _, password = auth_string.partition(":")
    return user, password


def wait_until_healthy(
    api_url: str,
    process: subprocess.Popen[bytes] | None = None,
    *,
    timeout_s: float = STARTUP_TIMEOUT_S,
) -> None:
    """Wait for ``GET {api_url}/health`` (open even with auth on) while ``process`` lives."""
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ServeError(f"the Prefect server exited with status {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{api_url}/health").status_code == 200:
                    return
            time.sleep(POLL_S)
    raise ServeError(f"the Prefect API at {api_url} did not answer within {timeout_s:g} s")


def start_server(
    home: Path, host: str, port: int, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """``prefect server start`` with its database (and UI files) under ``home``; it never
    outlives this process (stop it with :func:`voxlake.lifeline.stop`)."""
    check_bind(host, env)
    home.mkdir(parents=True, exist_ok=True)
    server_env = {
        **env,
        "PREFECT_HOME": str(home.resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": env.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    }
    server_env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "prefect", "server", "start"]
    return lifeline.start([*cmd, "--host", host, "--port", str(port)], env=server_env)


@dataclass
class Served:
    api_url: str
    ui_url: str
    env: dict[str, str]  # what clients and workers of this API run with


def client_env(api_url: str, env: Mapping[str, str]) -> dict[str, str]:
    out = {**env, "PREFECT_API_URL": api_url}
    if env.get(SERVER_AUTH_ENV) and not env.get(CLIENT_AUTH_ENV):
        out[CLIENT_AUTH_ENV] = env[SERVER_AUTH_ENV]
    return out


async def prepare(api_url: str, env: Mapping[str, str], pool: str = POOL) -> None:
    """Create the work pool and the shared request limit, and register the block types."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessWorker

    from voxlake.credentials import AssemblyAICredentials
    from voxlake.shared_budget import account_figures, ensure_shared_limit

    updates: dict[object, object] = {PREFECT_API_URL: api_url}
    if env.get(CLIENT_AUTH_ENV):
        updates[PREFECT_API_AUTH_STRING] = env[CLIENT_AUTH_ENV]
    with temporary_settings(updates=updates):
        async with get_client() as client:
            template = ProcessWorker.get_default_base_job_template()
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(
                    WorkPoolCreate(name=pool, type="process", base_job_template=template)
                )
        # VOXLAKE_ACCOUNT_RATE_LIMIT (e.g. a serve-local's 600/60) sizes it; default AssemblyAI's.
        await ensure_shared_limit(figures=account_figures(env))
        await AssemblyAICredentials.aregister_type_and_schema()


def deploy(env: Mapping[str, str], prefect_file: str = PREFECT_FILE) -> None:
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    status = lifeline.run([*cmd, "--prefect-file", prefect_file], env=env, cwd=project_directory())
    if status != 0:
        raise ServeError(f"prefect deploy failed (status {status}); see above")


def start_worker(env: Mapping[str, str], pool: str = POOL) -> subprocess.Popen[bytes]:
    return lifeline.start(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],
        env=env,
        cwd=project_directory(),
    )


def backfill_command() -> str:
    params = '{"manifest": "s3://bucket/prefix/", "output": "s3://lake/voxlake", "shards": 4}'
    return f"prefect deployment run 'transcribe-manifest/backfill' --params {shlex.quote(params)}"


@contextlib.contextmanager
def _stopped_at_exit(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    """Stop ``processes`` (as the list is when the block ends), last started first."""
    try:
        yield
    finally:
        for process in reversed(processes):
            lifeline.stop(process)


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment or the active Prefect profile."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    home: Path = DEFAULT_HOME,
    pool: str = POOL,
    worker: bool = True,
    say: Callable[[str], None] = print,
) -> None:
    """Run everything until interrupted (or until the server or worker exits)."""
    import asyncio

    env = dict(os.environ)
    processes: list[subprocess.Popen[bytes]] = []
    with _stopped_at_exit(processes):
        api_url = configured_api_url()
        server = None
        if api_url is None:
            check_bind(host, env)  # before anything starts
            server = start_server(home, host, port, env)
            processes.append(server)
            shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            api_url = f"http://{shown_host}:{port}/api"
            say(f"Prefect server starting; its database is in {home.resolve()}")
        wait_until_healthy(api_url, server)
        env = client_env(api_url, env)
        asyncio.run(prepare(api_url, env, pool))
        deploy(env)
        if worker:
            processes.append(start_worker(env, pool))
        say(f"\nPrefect UI: {api_url.removesuffix('/api')}")
        say("Start a backfill:")
        say(f"  PREFECT_API_URL={api_url} {backfill_command()}")
        say(f"More workers: PREFECT_API_URL={api_url} prefect worker start --pool {pool}")
        say("Ctrl-C stops the worker and the server.")
        if processes:
            with contextlib.suppress(KeyboardInterrupt):
                processes[-1].wait()
