"""Webhook mode of a run: wait on the receiver's notifications instead of polling.

A run given ``webhook_url`` submits every job with it and the auth header
(:class:`RunWebhook`); AssemblyAI then POSTs ``{transcript_id, status}`` to the receiver
(``voxlake webhooks OUTPUT``, :mod:`voxlake.webhooks`), which records it under the same output
root. :class:`NotifiedWaiter` takes the place of the run's :class:`~voxlake.polling.SharedPoller`
in the poll stage: every ``check_s`` it lists the notifications folder (one readdir, or one S3
LIST) and hands each notified job to the collect stage, whose one GET is the only request a job
costs after its submit. No status is polled on the happy path.

The safety net is the run's ordinary poller with a slow policy: a job not notified within
``safety_poll_s`` of its submit (the notification was lost: the receiver was down for longer
than AssemblyAI's retries, refused it, or was never reachable) is looked for by the list
endpoint, then every ``safety_poll_s``, like any polled job. A job resumed from an earlier run
is looked for sooner (its notification may have landed while no run was waiting, or never).
Once a job is collected its notification is acknowledged (removed); a duplicate delivery
rewrites one file (the receiver's), so a job is collected once however often it was notified.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from voxlake.errors import ConfigurationError, VoxlakeError
from voxlake.models import TranscriptStatus
from voxlake.polling import PollResult, SharedPoller
from voxlake.redact import redact_url
from voxlake.storage import S3Options

if TYPE_CHECKING:
    from voxlake.webhooks import NotificationStore, WebhookAuth

log = logging.getLogger(__name__)

#: Seconds between two looks at the notifications folder: a notified job waits this long at
#: most (locally a readdir; on S3 one LIST, ~3,600 an hour of waiting).
CHECK_S = 1.0


@dataclass(frozen=True)
class RunWebhook:
    """Where a run's jobs announce their end, and with which secret header."""

    url: str
    auth: WebhookAuth  # its value is a SecretStr: masked in this dataclass's repr too
    safety_poll_s: float

    def params(self) -> dict[str, Any]:
        """The submit's webhook fields (the value stays a ``SecretStr`` up to the request body)."""
        return {
            "webhook_url": self.url,
            "webhook_auth_header_name": self.auth.header_name,
            "webhook_auth_header_value": self.auth.header_value,
        }


@dataclass(frozen=True)
class BlockSecret:
    """The webhook auth header value as read from a Prefect ``Secret`` block (deployments)."""

    name: str
    value: SecretStr


def run_webhook(
    url: str | None,
    header_name: str,
    value_env: str | None,
    safety_poll_s: float,
    *,
    secret: BlockSecret | None = None,
) -> RunWebhook | None:
    """The run's webhook from its request's fields, or None (polling); ConfigurationError
    naming what is missing or wrong (never the secret). The value comes from the environment
    variable ``value_env``, or from ``secret``, a Secret block the caller read
    (``webhook_auth_header_value_secret``): one of them, with a URL."""
    if url is None:
        if value_env is not None or secret is not None:
            raise ConfigurationError(
                "a webhook auth header value is given without --webhook-url (webhook_url): "
                "give the receiver's URL too, or neither"
            )
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"--webhook-url {redact_url(url)!r} is not an http(s) URL: give the receiver's "
            "public URL, ending in /voxlake/webhook (docs/webhooks.md)"
        )
    from voxlake.webhooks import auth_from_env, checked_auth

    if secret is not None:
        if value_env is not None:
            raise ConfigurationError(
                "give webhook_auth_header_value_env or webhook_auth_header_value_secret, not both"
            )
        auth = checked_auth(
            header_name, secret.value.get_secret_value(), where=f"the Secret block {secret.name!r}"
        )
        return RunWebhook(url, auth, safety_poll_s)
    if value_env is None:
        raise ConfigurationError(
            "--webhook-url needs --webhook-auth-header-value-env VAR, the environment variable "
            "holding the receiver's secret (voxlake webhooks refuses notifications without it); "
            "a deployment may name a Prefect Secret block instead "
            "(webhook_auth_header_value_secret)"
        )
    auth = auth_from_env(header_name, value_env)
    return RunWebhook(url, auth, safety_poll_s)


class NotifiedWaiter:
    """The poll stage's waiter in webhook mode (see the module doc). The same calls as
    :class:`~voxlake.polling.SharedPoller`: :meth:`wait`, :meth:`abandon`, :meth:`aclose`."""

    def __init__(
        self,
        output: str,
        s3: S3Options | None,
        poller: SharedPoller,
        *,
        safety_poll_s: float,
        resumed_first_poll_s: float,
        check_s: float = CHECK_S,
    ) -> None:
        self._output, self._s3 = output, s3
        self._store: NotificationStore | None = None  # opened in a thread (S3: a request)
        self._poller = poller
        self._safety_poll_s = safety_poll_s
        self._resumed_first_poll_s = min(resumed_first_poll_s, safety_poll_s)
        self._check_s = check_s
        self._waiters: dict[str, asyncio.Future[PollResult]] = {}
        self._safety: dict[str, asyncio.Future[list[PollResult]]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    async def wait(self, first_poll_s: Mapping[str, float]) -> list[PollResult]:
        """Await the ids of ``first_poll_s`` (as :meth:`SharedPoller.wait`: a delay of 0 marks
        a job resumed from an earlier run), each resolved by its notification or the net."""
        loop = asyncio.get_running_loop()
        futures = []
        for tid, delay in first_poll_s.items():
            fut = self._waiters.get(tid)
            if fut is None:
                fut = self._waiters[tid] = loop.create_future()
                net = self._resumed_first_poll_s if delay <= 0 else self._safety_poll_s
                safety = asyncio.ensure_future(self._poller.wait({tid: net}))
                safety.add_done_callback(functools.partial(self._polled, tid))
                self._safety[tid] = safety
            futures.append(fut)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="voxlake-notified")
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        while self._waiters:
            try:
                notes = await asyncio.to_thread(self._notified, list(self._waiters))
            except VoxlakeError as exc:
                # The safety net still runs; the next look may succeed.
                log.warning("reading webhook notifications failed: %s", exc)
                notes = {}
            for tid, status in notes.items():
                self._resolve(PollResult(tid, TranscriptStatus(status)))
            if self._waiters:
                await asyncio.sleep(self._check_s)

    def _notified(self, transcript_ids: list[str]) -> dict[str, str]:
        if self._store is None:
            from voxlake.webhooks import NotificationStore

            self._store = NotificationStore(self._output, s3=self._s3)
        return {tid: n.status for tid, n in self._store.notified(transcript_ids).items()}

    def _polled(self, tid: str, safety: asyncio.Future[list[PollResult]]) -> None:
        """The safety net found the job first (or failed for good)."""
        if safety.cancelled():
            return  # notified: abandoned by the poller
        exc = safety.exception()
        if exc is not None:
            error = exc if isinstance(exc, VoxlakeError) else VoxlakeError(str(exc))
            self._resolve(PollResult(tid, None, error=error))
            return
        (result,) = safety.result()
        if tid in self._waiters:
            log.info("%s: no webhook notification; found by the safety-net poll", tid)
        self._resolve(result)

    def _resolve(self, result: PollResult) -> None:
        tid = result.transcript_id
        self._safety.pop(tid, None)
        fut = self._waiters.pop(tid, None)
        if fut is not None:
            self._poller.abandon([tid])  # notified: the net need not look for it
            if not fut.done():
                fut.set_result(result)

    async def acknowledge(self, transcript_ids: Iterable[str]) -> None:
        """Remove the notifications of collected jobs; a failure is only logged (a stale
        notification is harmless: the ledger says the job is collected)."""
        ids = list(transcript_ids)
        if not ids or self._store is None:
            return
        try:
            await asyncio.to_thread(self._store.acknowledge, ids)
        except VoxlakeError as exc:
            log.warning("acknowledging webhook notifications failed: %s", exc)

    def abandon(self, transcript_ids: Iterable[str]) -> None:
        """Stop waiting for ids whose waiters gave up (poll timeout)."""
        ids = list(transcript_ids)
        self._poller.abandon(ids)
        for tid in ids:
            self._safety.pop(tid, None)
            fut = self._waiters.pop(tid, None)
            if fut is not None and not fut.done():
                fut.cancel()

    async def aclose(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for safety in self._safety.values():
            safety.cancel()
        await self._poller.aclose()
