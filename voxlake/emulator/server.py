"""``LocalServer``: the emulator on uvicorn in a background thread, as a context manager.

The listening socket is bound before uvicorn starts (so ``port=0`` gives a known port and the
upload URLs can carry it), and readiness is an event set by uvicorn's startup, waited on with a
deadline: no sleeps. uvicorn runs with ``log_config=None`` so its records (access log included,
which never contains headers) propagate to the root logger.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import uvicorn

from voxlake.emulator.app import EmulatorState, create_app
from voxlake.emulator.config import EmulatorConfig

log = logging.getLogger("voxlake.emulator")


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self._ready.set()

    def install_signal_handlers(self) -> None:  # pragma: no cover - uvicorn < 0.29 hook
        # The host process (pytest, the CLI) owns signals; a background server must not.
        return


class LocalServer:
    """Run the emulator on ``host:port`` (``port=0``: any free port) until stopped."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        startup_timeout_s: float = 15.0,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.state: EmulatorState | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None
        self._exited = threading.Event()  # set when the server thread ends

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # uvicorn leaves Nagle on for sockets it is handed; headers and body go out as two
        # writes, so Nagle plus delayed ACKs would add ~40 ms to every response. Accepted
        # sockets inherit this option from the listener.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)
        self._sock = sock
        self.port = sock.getsockname()[1]
        try:
            self.state = EmulatorState(self.config, self.base_url)
        except BaseException:
            sock.close()
            raise
        if self.config.uses_default_key:
            log.warning("no API key configured: accepting the documented local demo key only")
        uv_config = uvicorn.Config(
            create_app(self.state),
            log_config=None,
            access_log=True,
            lifespan="on",
            timeout_graceful_shutdown=3,
            timeout_keep_alive=30,
        )
        ready = threading.Event()
        self._server = _Server(uv_config, ready)
        self._thread = threading.Thread(
            target=self._run, name=f"voxlake-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        if not ready.wait(self.startup_timeout_s) or self._error is not None:
            self.stop()
            raise RuntimeError(f"emulator failed to start on {self.base_url}") from self._error
        log.info("emulator listening on %s", self.base_url)
        return self

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by start()
            self._error = exc
        finally:
            self._exited.set()

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._sock is not None:
            self._sock.close()
        if self.state is not None:
            self.state.cleanup_files()
        self._thread = None

    def serve_forever(self) -> None:
        """Block the calling thread until the server exits (used by the CLI).

        On an event, not ``Thread.join``: a join interrupted by Ctrl-C marks the thread as
        finished (CPython's bpo-45274 handling), so the :meth:`stop` that follows returned at
        once and closed the socket under the running server (a traceback, files deleted
        while jobs ran)."""
        self._exited.wait()

    def stats(self) -> dict[str, Any]:
        assert self.state is not None, "server not started"
        return self.state.stats.snapshot()

    def on_job_end(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(transcript_id)`` as each job ends (completed or error), on the
        server's thread, until the returned function is called. For a client in this process
        that would otherwise poll on a schedule (``voxlake run`` on the embedded default)."""
        assert self.state is not None, "server not started"
        listeners = self.state.job_end_listeners
        listeners.append(listener)
        return lambda: listeners.remove(listener)

    def wait_until(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Block until ``predicate(stats)`` holds (woken on every change; no polling sleeps)."""
        assert self.state is not None, "server not started"
        return self.state.stats.wait_until(predicate, timeout)

    def wait_for_transcript(self, transcript_id: str, timeout: float = 10.0) -> str:
        """Block until the transcript is completed or error; return that status."""
        assert self.state is not None
        state = self.state

        def done(_: dict[str, Any]) -> bool:
            rec = state.transcripts.get_any(transcript_id)
            return rec is not None and rec.done

        self.wait_until(done, timeout)
        rec = state.transcripts.get_any(transcript_id)
        assert rec is not None
        return rec.status

    def sweep_uploads(self) -> int:
        """Run the expired-upload sweep now (on the server loop); return files deleted."""
        state = self.state
        assert state is not None and state.loop is not None

        async def sweep() -> int:
            return state.sweep_uploads()

        return asyncio.run_coroutine_threadsafe(sweep(), state.loop).result(timeout=10)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
