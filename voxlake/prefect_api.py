"""The Prefect API a ``voxlake run`` reports to, started early when none is configured.

Without a Prefect API URL, Prefect 3 starts a temporary ("ephemeral") API server the first time
a flow runs: it imports its server code in the calling process, then starts the server in a
subprocess that imports it again and boots, and only then does the flow begin: seconds of every
run during which nothing else happens (benchmarks/README.md has the measured start-up).

``TemporaryPrefectAPI`` starts the same server (same command and environment as Prefect's
``SubprocessASGIServer``) at the very start of ``voxlake run``, so it boots on the second core
while this process imports Prefect, the flow and reads the manifest; the flow then reports to it
through ``temporary_settings`` and it is stopped when the run ends. With an API configured
(``PREFECT_API_URL`` in the environment or the active profile), nothing is started.

On a busy machine the server may take far longer than Prefect's 20 s ephemeral start-up
timeout, so the run waits for it as long as its process is alive, up to
``VOXLAKE_PREFECT_STARTUP_TIMEOUT_S`` (120 s), and then stops with a clear message. If the
process exits instead, Prefect's own ephemeral mode takes over, with its timeout raised to the
same figure.

The server never outlives the CLI, even after ``kill -9``: its stdin is a pipe from the CLI, and
a thread in the server exits the process when that pipe reaches end-of-file, which the kernel
makes happen when the CLI dies however it dies (:mod:`voxlake.lifeline` says why a pipe rather
than Linux's PR_SET_PDEATHSIG). The server is one process of our own, so it watches the pipe
itself instead of running under lifeline's watchdog.

Run as ``python -m voxlake.prefect_api PORT [--exit-with-stdin]``, this module is that server
process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from voxlake.errors import VoxlakeError
from voxlake.lifeline import on_stdin_eof, sigint_blocked
from voxlake.settings import DEFAULT_PREFECT_STARTUP_TIMEOUT_S, STARTUP_TIMEOUT_ENV

logger = logging.getLogger("voxlake.prefect_api")

# What Prefect's SubprocessASGIServer sets for its ephemeral server: no UI, ephemeral services.
# Less than it: no block types registered at start-up. A run reports to this API with its
# credentials in hand and names no block, and registering them first imports every installed
# Prefect collection (prefect-aws: boto3) and writes 54 block types into a new database, on the
# way to the run's first request (benchmarks/README.md, B10). `prefect server start` on the same
# database registers them as usual.
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "0",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "0",
}
# Defaults of a server this run starts (ours, or Prefect's own ephemeral one if ours could not
# start), under whatever the user set: the machines this runs on often have no internet, and
# telemetry would only log errors. Given to the server's process, not written into this one's
# environment.
SERVER_DEFAULTS = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
# How often readiness and recording are checked: the run waits on both, and a check is one
# local request.
POLL_S = 0.05
STOP_TIMEOUT_S = 5.0
RECORD_TIMEOUT_S = 10.0
# Argument that tells the server process its stdin is the CLI's lifeline pipe.
WATCH_STDIN = "--exit-with-stdin"
# Exit status of a server process that found an API configured and so has nothing to serve.
EXIT_NOT_NEEDED = 3


def quiet_prefect_defaults() -> None:
    """Keep a CLI run's terminal readable: Prefect logs every task run at INFO by default.

    Only a default: a level the user set in the environment or a Prefect profile wins. Written
    into this process's environment, the one process-wide setting a run makes, because Prefect
    configures its logging from it when it is imported, before any ``temporary_settings`` could
    apply; the run's own processes (the temporary API) inherit it. ``voxlake run`` calls this
    at its start; importing voxlake never does.
    """
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _needs_temporary_api() -> bool:
    """True when Prefect would start its ephemeral API: no URL configured, ephemeral allowed."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return settings.api.url is None and settings.server.ephemeral.enabled


class TemporaryPrefectAPI:
    """A Prefect API server for one run, started before the flow's imports; see the module doc.

    Enter it first thing (it only spawns a process), do the slow imports, then run the flow
    inside :meth:`connected`.
    """

    def __init__(self, startup_timeout_s: float = DEFAULT_PREFECT_STARTUP_TIMEOUT_S) -> None:
        #: How long the server may take to start (the settings' prefect_startup_timeout_s).
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._url: str | None = None  # set while the run reports to this server

    def __enter__(self) -> TemporaryPrefectAPI:
        if os.environ.get("PREFECT_API_URL"):
            return self
        # Already imported (a test harness, a notebook): the settings in force are cheap to read
        # and may point at an API already.
        if "prefect" in sys.modules and not _needs_temporary_api():
            return self
        self._port = _free_port()
        # Ctrl-C is for the CLI: the server keeps answering while the run records its end,
        # and stops when the CLI stops it (or when its lifeline closes).
        with sigint_blocked():
            self._process = subprocess.Popen(
                [sys.executable, "-m", "voxlake.prefect_api", str(self._port), WATCH_STDIN],
                env={**SERVER_DEFAULTS, **os.environ, **SERVER_ENV},
                # The server's lifeline: it exits when this pipe closes (see the module doc).
                stdin=subprocess.PIPE,
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()  # a graceful stop first: uvicorn finishes its requests
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdin is not None:
            process.stdin.close()

    @contextlib.contextmanager
    def connected(self) -> Iterator[str | None]:
        """Run the body against this server when Prefect would otherwise start its own.

        Yields the API URL in use, or None when Prefect decides (a configured API, or its own
        ephemeral server if this one could not start).
        """
        if self._process is None or not _needs_temporary_api():
            yield None
            return
        url = f"http://127.0.0.1:{self._port}/api"
        if not self._wait_until_healthy(url):
            with self._prefects_own_server():
                yield None
            return
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self._url = url
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain_prefect_workers()
                self._url = None

    @contextlib.contextmanager
    def _prefects_own_server(self) -> Iterator[None]:
        """Settings for Prefect's own ephemeral server, the fallback: as long to start as ours
        (its 20 s default ends runs on a busy machine before any work) and
        :data:`SERVER_DEFAULTS`; for the run only, and never lowering what the user set."""
        from prefect.settings import (
            PREFECT_SERVER_ANALYTICS_ENABLED,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
            get_current_settings,
            temporary_settings,
        )

        current = get_current_settings().server.ephemeral.startup_timeout_seconds
        updates: dict[Any, Any] = {
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: max(
                current, int(self.startup_timeout_s)
            )
        }
        if "PREFECT_SERVER_ANALYTICS_ENABLED" not in os.environ:
            updates[PREFECT_SERVER_ANALYTICS_ENABLED] = False
        with temporary_settings(updates=updates):
            yield

    def wait_until_recorded(self, flow_run_id: object, task_runs: int) -> None:
        """Before stopping: wait until this server has recorded ``task_runs`` final task runs.

        Prefect clients report task-run states as events, which the server records
        asynchronously; a server stopped right after the flow returns loses the latest ones
        (task runs missing or left Running in its database). No-op for an API not ours.
        """
        if self._url is None:
            return
        import httpx

        _drain_prefect_workers()
        final = {"any_": ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"]}
        query = {
            "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
            "task_runs": {"state": {"type": final}},
        }
        deadline = time.monotonic() + RECORD_TIMEOUT_S
        recorded = 0
        with httpx.Client(base_url=self._url, timeout=RECORD_TIMEOUT_S) as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    recorded = int(http.post("/task_runs/count", json=query).json())
                    if recorded >= task_runs:
                        return
                time.sleep(POLL_S)
        logger.warning(
            "the temporary Prefect API recorded %d of %d task runs before it stopped",
            recorded,
            task_runs,
        )

    def _wait_until_healthy(self, url: str) -> bool:
        import httpx
        from prefect.settings import get_current_settings

        process = self._process
        assert process is not None
        timeout_s = max(
            self.startup_timeout_s,
            get_current_settings().server.ephemeral.startup_timeout_seconds,
        )
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    logger.debug("temporary Prefect API exited (%s)", process.returncode)
                    return False
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{url}/health").status_code == 200:
                        return True
                time.sleep(POLL_S)
        # Still alive but not answering: Prefect's own server would fare no better.
        raise PrefectAPIStartError(
            f"the temporary Prefect API did not answer within {timeout_s:g} s (the machine may "
            f"be very busy). Start one with 'prefect server start' and set PREFECT_API_URL, or "
            f"allow longer with {STARTUP_TIMEOUT_ENV}=300."
        )


class PrefectAPIStartError(VoxlakeError):
    """The run's temporary Prefect API did not start within the start-up timeout."""


def _drain_prefect_workers() -> None:
    """Send the logs and events still queued before the server they go to stops.

    What ``prefect_test_harness`` does before stopping its server, for the same reason.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=STOP_TIMEOUT_S)
    EventsWorker.drain_all(timeout=STOP_TIMEOUT_S)


def serve(port: int, *, exit_with_stdin: bool = False) -> int:
    """The server process: Prefect's ephemeral API app under uvicorn, as Prefect runs it."""
    if exit_with_stdin:  # first, before the slow imports below
        # os._exit: no clean-up that could hang; SQLite's journal keeps the database whole.
        on_stdin_eof(lambda: os._exit(0))
    if not _needs_temporary_api():
        return EXIT_NOT_NEEDED
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="error",
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), exit_with_stdin=WATCH_STDIN in sys.argv[2:]))
