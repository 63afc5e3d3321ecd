"""The webhook receiver as ``voxlake serve --webhooks OUTPUT`` runs it: in a thread of serve.

The same app as ``voxlake webhooks`` (:func:`voxlake.webhooks.create_app`), on its own uvicorn
server in a thread of the serve process rather than a process of its own: it starts first,
before the Prefect API is waited for (a notification is recorded whatever Prefect is doing),
and its collector (``--webhook-collect``) is handed the deployments' AssemblyAI endpoint once
serve has chosen it (:meth:`RunningReceiver.use`). It stops with serve, Ctrl-C included: the
notifications being recorded and the collector's round under way finish first.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from voxlake.errors import ConfigurationError
from voxlake.request import DEFAULT_RECEIVER_PORT, DEFAULT_WEBHOOK_HEADER

if TYPE_CHECKING:
    from voxlake.credentials import AssemblyAICredentials

#: Seconds serve waits for the receiver to finish what it is doing when it stops.
STOP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ServeWebhooks:
    """``voxlake serve``'s ``--webhooks`` options: those of ``voxlake webhooks``."""

    output: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_RECEIVER_PORT
    auth_header_name: str = DEFAULT_WEBHOOK_HEADER
    auth_header_value_env: str | None = None
    collect: bool = False


class RunningReceiver:
    """The receiver's uvicorn server, listening from construction, serving once started."""

    def __init__(self, options: ServeWebhooks) -> None:
        from voxlake import webhooks

        if options.auth_header_value_env is None:
            raise ConfigurationError(
                "--webhooks needs --webhook-auth-header-value-env VAR, the environment variable "
                "holding the secret the jobs are submitted with (docs/webhooks.md)"
            )
        auth = webhooks.auth_from_env(options.auth_header_name, options.auth_header_value_env)

        import uvicorn

        from voxlake.run.collector import Collector

        store = webhooks.NotificationStore(options.output)
        self.collector = Collector(options.output) if options.collect else None
        try:
            self._sock, self.url = webhooks.listen(options.host, options.port)
        except OSError as exc:
            raise ConfigurationError(f"--webhook-port: {exc}") from None
        config = uvicorn.Config(
            webhooks.create_app(store, auth, self.collector),
            log_config=None,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="voxlake-webhooks",
            daemon=True,  # never keeps serve alive; stop() waits for it
        )

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def use(self, credentials: AssemblyAICredentials | None) -> None:
        """The collector collects with ``credentials`` (the deployments' endpoint) from now."""
        if self.collector is not None and credentials is not None:
            self.collector.use(credentials.get_client)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S)
        self._sock.close()


def _show_logs() -> None:
    """The receiver's and collector's log lines (notifications recorded and refused, rounds)
    on serve's standard error: serve configures no logging of its own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("voxlake.webhooks", "voxlake.run"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False


@contextlib.contextmanager
def receiving(
    options: ServeWebhooks | None, say: Callable[[str], None]
) -> Iterator[RunningReceiver | None]:
    """The receiver of ``options`` running for the block (None: no ``--webhooks``); a missing
    secret or a taken port is a :class:`ConfigurationError` before anything starts."""
    if options is None:
        yield None
        return
    receiver = RunningReceiver(options)
    _show_logs()
    receiver.start()
    collecting = (
        "; detached runs' jobs collected with the deployments' AssemblyAI endpoint"
        if options.collect
        else ""
    )
    say(
        f"Webhook receiver on {receiver.url} (notifications recorded under "
        f"{options.output}{collecting})"
    )
    try:
        yield receiver
    finally:
        receiver.stop()
