"""``voxlake serve``: everything scheduled runs and backfills need, on one machine.

1. the Prefect API: the one configured (``PREFECT_API_URL``, env or profile), else a
   persistent ``prefect server start`` whose database lives in ``--home``
   (``.voxlake/prefect`` under the current folder by default);
2. the process work pool (``voxlake``), the shared AssemblyAI request limit
   (:mod:`voxlake.shared_budget`; its figures model ``VOXLAKE_ACCOUNT_RATE_LIMIT`` when set) and
   the block types (:mod:`voxlake.credentials`);
3. the AssemblyAI endpoint of the deployments, saved as the ``AssemblyAICredentials`` block
   :data:`BLOCK` that they name (:func:`choose_endpoint`): the key in ``ASSEMBLYAI_API_KEY``,
   else a block of that name the user saved, else the embedded local AssemblyAI-compatible
   server, started here (``voxlake serve-local``), so a machine with no key runs everything;
4. the deployments of ``deployments/prefect.yaml`` (``prefect deploy --all``);
5. one worker on the pool; then it prints the UI address and the commands to start a backfill
   and to query its result, each runnable as printed (no virtual environment active), and runs
   until interrupted.

**Nothing left behind.** The server, the local server, ``prefect deploy`` and the worker run under
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
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxlake import lifeline
from voxlake.errors import ServeError
from voxlake.lifeline import POLL_S, STARTUP_TIMEOUT_S
from voxlake.steps import project_directory

if TYPE_CHECKING:
    from voxlake.credentials import AssemblyAICredentials
    from voxlake.serve_webhooks import RunningReceiver, ServeWebhooks

DEFAULT_HOME = Path(".voxlake/prefect")
DEFAULT_PORT = 4200
POOL = "voxlake"
PREFECT_FILE = "deployments/prefect.yaml"
SERVER_AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"
CLIENT_AUTH_ENV = "PREFECT_API_AUTH_STRING"
DATABASE_URL_ENV = "PREFECT_API_DATABASE_CONNECTION_URL"
DATABASES = ("sqlite", "postgresql")
# The AssemblyAICredentials block the deployments name (credentials_block in prefect.yaml).
BLOCK = "assemblyai"
# A server's first start migrates its database; generous for a busy 2-core machine.


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
    path: str = "/health",
    name: str = "the Prefect server",
    output: Path | None = None,
) -> None:
    """Wait for ``GET {api_url}{path}`` (Prefect's is open even with auth on) while ``process``
    lives; if it exits, the error holds ``output``, what it printed, if given."""
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                said = f":\n{output.read_text(errors='replace').strip()}" if output else ""
                raise ServeError(f"{name} exited with status {process.returncode}{said}")
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{api_url}{path}").status_code == 200:
                    return
            time.sleep(POLL_S)
    raise ServeError(f"{name} at {api_url} did not answer within {timeout_s:g} s")


def start_server(
    home: Path, host: str, port: int, env: Mapping[str, str], database_url: str | None = None
) -> subprocess.Popen[bytes]:
    """``prefect server start`` with its database (and UI files) under ``home``, or in the
    PostgreSQL of ``database_url``; it never outlives this process (stop it with
    :func:`voxlake.lifeline.stop`)."""
    check_bind(host, env)
    home.mkdir(parents=True, exist_ok=True)
    server_env = {
        **env,
        "PREFECT_HOME": str(home.resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": env.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    }
    if database_url:
        server_env[DATABASE_URL_ENV] = database_url
    server_env.pop("PREFECT_API_URL", None)
    cmd = [sys.executable, "-m", "prefect", "server", "start"]
    # Its standard output (a banner whose commands need an active virtual environment and set
    # a profile; start-up errors) goes to a file that serve shows when the server exits; its
    # log lines (standard error) to the console.
    with server_output(home).open("wb") as banner:
        return lifeline.start(
            [*cmd, "--host", host, "--port", str(port)], env=server_env, stdout=banner
        )


def server_output(home: Path) -> Path:
    return home / "prefect-server.out"


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


def _api_settings(api_url: str, env: Mapping[str, str]) -> contextlib.AbstractContextManager[Any]:
    """Prefect's client settings for ``api_url`` (and its auth), for this process only."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    updates: dict[Any, Any] = {PREFECT_API_URL: api_url}
    if env.get(CLIENT_AUTH_ENV):
        updates[PREFECT_API_AUTH_STRING] = env[CLIENT_AUTH_ENV]
    return temporary_settings(updates=updates)


async def prepare(
    api_url: str, env: Mapping[str, str], pool: str = POOL
) -> AssemblyAICredentials | None:
    """Create the work pool and the shared request limit, and register the block types; the
    :data:`BLOCK` saved before, if any."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    from voxlake.credentials import AssemblyAICredentials
    from voxlake.shared_budget import account_figures, ensure_shared_limit

    with _api_settings(api_url, env):
        async with get_client() as client:
            template = ProcessWorker.get_default_base_job_template()
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(
                    WorkPoolCreate(name=pool, type="process", base_job_template=template)
                )
        # VOXLAKE_ACCOUNT_RATE_LIMIT (e.g. a serve-local's 600/60) sizes it; default AssemblyAI's.
        await ensure_shared_limit(figures=account_figures(env))
        await AssemblyAICredentials.aregister_type_and_schema()
        try:
            return await AssemblyAICredentials.aload(BLOCK)
        except ValueError:  # Prefect's "Unable to find block document named ..."
            return None


async def save_credentials(
    api_url: str, env: Mapping[str, str], credentials: AssemblyAICredentials
) -> None:
    with _api_settings(api_url, env):
        await credentials.asave(BLOCK, overwrite=True)


def choose_endpoint(
    env: Mapping[str, str], saved: AssemblyAICredentials | None
) -> tuple[AssemblyAICredentials | None, str]:
    """The deployments' AssemblyAI endpoint: the block to save (None: keep the saved one, or
    start the embedded server when the message is empty) and what to tell the user.

    1. ``ASSEMBLYAI_API_KEY`` (with ``ASSEMBLYAI_BASE_URL`` / ``ASSEMBLYAI_REGION``): saved as
       the block, so every worker of the deployments, here or elsewhere, uses it;
    2. else a block the user saved under that name: kept;
    3. else the embedded local server (a block holding the public demo key is one that an
       earlier ``voxlake serve`` pointed at its local server, now gone): "" for the caller.
    """
    from voxlake.config import (
        API_KEY_ENV,
        BASE_URL_ENV,
        REGION_BASE_URLS,
        REGION_ENV,
        ClientSettings,
    )
    from voxlake.credentials import AssemblyAICredentials
    from voxlake.emulator import DEFAULT_API_KEY
    from voxlake.errors import ConfigurationError

    if env.get(API_KEY_ENV):
        try:
            settings = ClientSettings(
                api_key=env[API_KEY_ENV],
                base_url=env.get(BASE_URL_ENV) or None,
                region=env.get(REGION_ENV) or None,
            )
        except (ConfigurationError, ValueError) as exc:
            raise ServeError(str(exc)) from None
        credentials = AssemblyAICredentials(api_key=settings.api_key, base_url=settings.base_url)
        return credentials, (
            f"AssemblyAI endpoint: {settings.base_url}, with the key in {API_KEY_ENV} (saved as "
            f"the block '{BLOCK}' that the deployments use)"
        )
    if saved is not None and saved.api_key.get_secret_value() != DEFAULT_API_KEY:
        base_url = saved.base_url or REGION_BASE_URLS[saved.region]
        return None, (
            f"AssemblyAI endpoint: {base_url}, with the key saved in the block '{BLOCK}' (no "
            f"{API_KEY_ENV} in the environment)"
        )
    return None, ""


def start_local_server(
    env: Mapping[str, str], extra_args: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """``voxlake serve-local`` on a free loopback port, as ``voxlake run`` embeds it (same
    engine selection and job pace); its process and base URL. ``extra_args`` go to serve-local
    after these, so they win (``--engine scripted``, ...)."""
    from voxlake.emulator import DEFAULT_API_KEY
    from voxlake.runner import (
        EMBEDDED_CONCURRENCY,
        EMBEDDED_PROCESSING_FIXED_S,
        EMBEDDED_PROCESSING_PER_AUDIO_S,
    )

    # A port free now; taken by another process before serve-local binds it, serve-local exits
    # and wait_until_healthy says so.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    cmd = [sys.executable, "-m", "voxlake.cli", "serve-local", "--port", str(port)]
    # The demo key is public (docs/local-server.md); passing it says so without a warning.
    cmd += ["--api-key", DEFAULT_API_KEY, "--log-level", "WARNING"]
    cmd += ["--concurrency", str(EMBEDDED_CONCURRENCY)]
    cmd += ["--processing-fixed", str(EMBEDDED_PROCESSING_FIXED_S)]
    cmd += ["--processing-per-audio", str(EMBEDDED_PROCESSING_PER_AUDIO_S)]
    return lifeline.start([*cmd, *extra_args], env=env), f"http://127.0.0.1:{port}"


def deploy(env: Mapping[str, str], prefect_file: str = PREFECT_FILE) -> None:
    """``prefect deploy --all``; its output only when it fails (its hints name commands that
    need an active virtual environment and a worker that serve starts anyway)."""
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    cmd += ["--prefect-file", prefect_file]
    with tempfile.TemporaryFile() as output:
        status = lifeline.run(cmd, env=env, cwd=project_directory(), stdout=output, stderr=output)
        if status != 0:
            output.seek(0)
            said = output.read().decode(errors="replace").strip()
            raise ServeError(f"prefect deploy failed (status {status}):\n{said}")


def start_worker(env: Mapping[str, str], pool: str = POOL) -> subprocess.Popen[bytes]:
    return lifeline.start(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool],
        env=env,
        cwd=project_directory(),
    )


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when inside it (where the printed commands are
    run from), else absolute."""
    absolute = path.absolute()
    with contextlib.suppress(ValueError):
        return str(absolute.relative_to(Path.cwd()))
    return str(absolute)


def script(name: str, module: str) -> str:
    """How to run this environment's console script ``name`` from the current folder with no
    virtual environment active: its path beside this interpreter (``.venv/bin/prefect`` in a
    checkout), else ``python -m module``."""
    path = Path(sys.executable).with_name(name)
    if path.exists():
        return shlex.quote(_shown(path))
    return f"{shlex.quote(sys.executable)} -m {module}"


def deployment_parameters(name: str, prefect_file: str = PREFECT_FILE) -> dict[str, Any]:
    import yaml

    text = (project_directory() / prefect_file).read_text(encoding="utf-8")
    for deployment in yaml.safe_load(text)["deployments"]:
        if deployment["name"] == name:
            return dict(deployment.get("parameters") or {})
    return {}


def commands(api_url: str, env: Mapping[str, str], pool: str) -> list[str]:
    """What ``voxlake serve`` prints once everything runs: each command runs as printed, in a
    new shell in the current folder (the API's address is part of it)."""
    prefix = f"PREFECT_API_URL={api_url}"
    if env.get(SERVER_AUTH_ENV) and not env.get(CLIENT_AUTH_ENV):
        prefix += f' {CLIENT_AUTH_ENV}="${SERVER_AUTH_ENV}"'
    prefect = f"{prefix} {script('prefect', 'prefect')}"
    params = deployment_parameters("backfill")
    manifest, output = str(params.get("manifest")), str(params.get("output"))
    # The deployments resolve relative paths in the checkout (voxlake/steps.py).
    shown = output if "://" in output else _shown(project_directory() / output)
    sql = "SELECT media_id, status, error FROM transcripts_current ORDER BY media_id"
    return [
        f"\nPrefect UI: {api_url.removesuffix('/api')}",
        f"Start a backfill of {manifest} into {output} (the deployment's parameters in "
        f"{PREFECT_FILE}):",
        f"  {prefect} deployment run transcribe-manifest/backfill",
        "(Your own media: add -p manifest=s3://bucket/prefix/ -p output=s3://lake/voxlake.)",
        "Once it has completed, its results:",
        f"  {script('voxlake', 'voxlake.cli')} query {shlex.quote(shown)} {shlex.quote(sql)}",
        f"More workers: {prefect} worker start --pool {pool}",
        "The nightly schedule is paused: docs/operations.md says how to point it at your media "
        "and start it.",
        "Ctrl-C stops the worker and the servers.",
    ]


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


def _wait_for_any(
    named: Mapping[str, subprocess.Popen[bytes]], receiver: RunningReceiver | None = None
) -> None:
    """Until one of ``named`` exits, or the webhook receiver stops (which is an error: say
    which). Ctrl-C propagates: the children are stopped on the way out, and the command says
    so once and exits 130."""
    while True:
        for name, process in named.items():
            if process.poll() is not None:
                raise ServeError(f"{name} exited with status {process.returncode}; see above")
        if receiver is not None and not receiver.alive():
            raise ServeError("the webhook receiver stopped; see above")
        time.sleep(POLL_S)


def server_database(
    database: str,
    home: Path,
    env: Mapping[str, str],
    processes: list[subprocess.Popen[bytes]],
    named: dict[str, subprocess.Popen[bytes]],
) -> tuple[str | None, str]:
    """The database URL for the Prefect server (None: its default, SQLite in ``home``) and
    where that is, for the user. ``postgresql``: the one ``PREFECT_API_DATABASE_CONNECTION_URL``
    names, else a PostgreSQL started here with its files beside ``home``
    (``.voxlake/postgres``, :mod:`voxlake.postgres`), added to ``processes`` and ``named``."""
    from voxlake import postgres

    if database not in DATABASES:
        raise ServeError(f"--database {database!r}: choose one of {', '.join(DATABASES)}")
    configured = env.get(DATABASE_URL_ENV)
    if database == "sqlite":
        if configured:  # Prefect's own setting, passed on to the server as it is
            return None, f"the one {DATABASE_URL_ENV} names ({postgres.shown_url(configured)})"
        return None, f"in {home.resolve()}"
    if configured:
        if not postgres.is_postgresql_url(configured):
            raise ServeError(
                f"--database postgresql, but {DATABASE_URL_ENV} names another database "
                f"({postgres.shown_url(configured)}): unset it to let voxlake serve start a "
                f"PostgreSQL, or set it to postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB"
            )
        return configured, f"PostgreSQL at {postgres.shown_url(configured)} ({DATABASE_URL_ENV})"
    root = home.resolve().parent / "postgres"
    process, url = postgres.start(root, env)
    processes.append(process)
    named["PostgreSQL"] = process
    return url, f"PostgreSQL in {root} ({postgres.shown_url(url)})"


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    home: Path = DEFAULT_HOME,
    pool: str = POOL,
    worker: bool = True,
    local_args: Sequence[str] = (),
    database: str = "sqlite",
    webhooks: ServeWebhooks | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Run everything until interrupted (or until one of the processes it started exits).

    ``local_args``: more arguments for the embedded ``voxlake serve-local``, when it starts.
    ``database``: of the Prefect server it starts, ``sqlite`` (in ``home``) or ``postgresql``
    (:func:`server_database`). ``webhooks``: the webhook receiver to run beside, first
    (:mod:`voxlake.serve_webhooks`).
    """
    import asyncio

    from voxlake.credentials import AssemblyAICredentials
    from voxlake.emulator import DEFAULT_API_KEY
    from voxlake.serve_webhooks import receiving

    env = dict(os.environ)
    processes: list[subprocess.Popen[bytes]] = []
    named: dict[str, subprocess.Popen[bytes]] = {}
    # The receiver first: its options are checked before anything starts, and it
    # records notifications whatever the rest is doing. Stopped last.
    with receiving(webhooks, say) as receiver, _stopped_at_exit(processes):
        api_url = configured_api_url()
        server = None
        if api_url is None:
            check_bind(host, env)  # before anything starts
            database_url, where = server_database(database, home, env, processes, named)
            server = start_server(home, host, port, env, database_url)
            processes.append(server)
            shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            api_url = f"http://{shown_host}:{port}/api"
            say(f"Prefect server starting; its database is {where}")
            named["the Prefect server"] = server
        elif database != "sqlite":
            raise ServeError(
                f"--database {database} is for the Prefect server that voxlake serve starts, "
                f"but PREFECT_API_URL names one already ({api_url}): unset it, or leave out "
                f"--database"
            )
        wait_until_healthy(api_url, server, output=server_output(home) if server else None)
        printed_env = env
        env = client_env(api_url, env)
        saved = asyncio.run(prepare(api_url, env, pool))
        credentials, endpoint = choose_endpoint(env, saved)
        local = None
        if not endpoint:  # no key: the embedded server, starting while prefect deploy runs
            # Its jobs and uploads on disk beside Prefect's database, so a restarted serve
            # finishes the jobs that were in flight (docs/local-server.md, "State on disk").
            state = ["--state-dir", str(home.resolve().parent / "local-server")]
            local, local_url = start_local_server(env, [*state, *local_args])
            processes.append(local)
            named["the embedded local server (voxlake serve-local)"] = local
        deploy(env)
        if local is not None:
            wait_until_healthy(
                local_url, local, path="/_voxlake/stats", name="the embedded local server"
            )
            credentials = AssemblyAICredentials(api_key=DEFAULT_API_KEY, base_url=local_url)
            endpoint = (
                f"No ASSEMBLYAI_API_KEY: the deployments use the embedded local "
                f"AssemblyAI-compatible server at {local_url} (saved as the block '{BLOCK}'); "
                f"no audio leaves this machine. To use AssemblyAI, export ASSEMBLYAI_API_KEY "
                f"and start voxlake serve again."
            )
        if credentials is not None:
            asyncio.run(save_credentials(api_url, env, credentials))
        if receiver is not None:
            receiver.use(credentials or saved)  # the deployments' endpoint
        say(endpoint)
        if worker:
            named["the worker"] = start_worker(env, pool)
            processes.append(named["the worker"])
        for line in commands(api_url, printed_env, pool):
            say(line)
        if processes or receiver is not None:
            _wait_for_any(named, receiver)
