"""The webhook receiver: AssemblyAI's "transcript ready" notifications, recorded durably.

AssemblyAI POSTs ``{"transcript_id": "<uuid>", "status": "completed" | "error"}`` to a job's
``webhook_url``, with the job's custom auth header when one was given; any non-2xx reply is
retried (up to 10 attempts), a 4xx is final. This module is the receiving end (docs/webhooks.md):

- :func:`create_app`: an ASGI app with one route, ``POST`` :data:`WEBHOOK_PATH`. It checks the
  auth header in constant time (401 if missing or wrong), refuses a body that is not the
  notification (400; 413 if large) and other methods (405), and answers 200 only once the
  notification is durable, so a crash before that makes AssemblyAI send it again.
- :class:`NotificationStore`: one JSON file per transcript id under the output root,
  :data:`NOTIFICATIONS_DIR`/``<transcript_id>.json`` (written atomically: temp file, fsync,
  rename locally; one PUT on S3). A duplicate delivery rewrites the same file, keeping the first
  receipt time and counting deliveries: one pending notification per transcript, however many
  times it was sent.
- :func:`pending_notifications` and :func:`acknowledge`: what a consumer (the run, later) reads
  and removes once the transcript is collected.

The auth header value is a ``SecretStr``; it never reaches a log line, a file or a repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import socket
from collections.abc import AsyncIterator, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from voxlake.errors import ConfigurationError
from voxlake.lake.root import OutputRoot
from voxlake.storage import S3Options, StorageError, storage_error

if TYPE_CHECKING:
    from voxlake.run.collector import Collector

__all__ = [
    "NOTIFICATIONS_DIR",
    "WEBHOOK_PATH",
    "Notification",
    "NotificationStore",
    "WebhookAuth",
    "acknowledge",
    "create_app",
    "listen",
    "pending_notifications",
]

log = logging.getLogger(__name__)

#: The receiver's one route; the webhook URL given to AssemblyAI is ``<receiver URL>`` + this.
WEBHOOK_PATH = "/voxlake/webhook"
#: Pending notifications, relative to the output root (``_``: outside the tables' globs).
NOTIFICATIONS_DIR = "_webhooks/notifications"
#: A notification is ~80 bytes; anything far larger is not one and is not read whole.
MAX_BODY_BYTES = 16 * 1024

#: Deliveries of one transcript are serialised (read, then rewrite) on one of these many locks.
_LOCK_STRIPES = 64

# AssemblyAI's ids are UUIDs (format: uuid); the pattern is looser but is what makes an id safe
# as a file name: no '/', no '..', no leading '.'.
_TRANSCRIPT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
# An HTTP header name (RFC 9110 token).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


class WebhookAuth(BaseModel):
    """The custom auth header AssemblyAI sends with each notification (``webhook_auth_header_*``
    of the submitted job). ``value`` is a ``SecretStr``: masked in reprs and errors."""

    model_config = ConfigDict(frozen=True, hide_input_in_errors=True)

    header_name: str
    header_value: SecretStr

    @field_validator("header_name")
    @classmethod
    def _token(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an HTTP header name (letters, digits, '-')")
        return value

    @field_validator("header_value")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("the auth header value is empty")
        return value

    def matches(self, values: list[bytes]) -> bool:
        """Exactly one header of that name, equal to the secret (compared in constant time)."""
        expected = self.header_value.get_secret_value().encode()
        return len(values) == 1 and hmac.compare_digest(values[0], expected)


class Notification(BaseModel):
    """One transcript's notification as recorded: what AssemblyAI said, when, how many times."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transcript_id: str
    status: Literal["completed", "error"]
    first_received_at: dt.datetime = Field(description="UTC, the first delivery recorded")
    last_received_at: dt.datetime = Field(description="UTC, the latest delivery recorded")
    deliveries: int = Field(ge=1, description="deliveries recorded (duplicates included)")


class _Body(BaseModel):
    """AssemblyAI's ``TranscriptReadyNotification`` (``additionalProperties: false``)."""

    model_config = ConfigDict(extra="forbid")

    transcript_id: str
    status: Literal["completed", "error"]

    @field_validator("transcript_id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not _TRANSCRIPT_ID.fullmatch(value):
            raise ValueError("not a transcript id")
        return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class NotificationStore:
    """The notifications folder of one output root, local or ``s3://``.

    Writes are atomic; reads never see a partial file. Within one process, :meth:`record`
    serialises deliveries of the same transcript (the app's lock); two receivers on one root
    could at worst undercount ``deliveries`` of a transcript delivered to both at once.
    """

    def __init__(self, output: str, *, s3: S3Options | None = None) -> None:
        self._root = OutputRoot.of(output, s3=s3).check_bucket()  # S3: one request
        self._fs = None if self._root.local else self._root.fsspec
        self._folder = self._root.join(NOTIFICATIONS_DIR)
        self.output = output

    def _error(self, exc: Exception, path: str, action: str) -> StorageError:
        if self._fs is not None:
            return storage_error(exc, f"s3://{path}", action)
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return StorageError(f"{action} {path}: {detail}", url=path, transient=True)

    def _path(self, transcript_id: str) -> str:
        return f"{self._folder}/{transcript_id}.json"

    def _read(self, path: str) -> Notification | None:
        try:
            data = Path(path).read_bytes() if self._fs is None else self._fs.cat_file(path)
        except FileNotFoundError:
            return None
        return Notification.model_validate_json(data)

    def _write(self, path: str, data: bytes) -> None:
        # Published whole (temp file and rename locally, one PUT on S3), as the tables are.
        self._root.publish_bytes(f"{NOTIFICATIONS_DIR}/{path.rsplit('/', 1)[-1]}", data)
        if self._fs is not None:
            return
        folder = self._folder
        # The rename is durable only once the folder is: AssemblyAI does not resend after a 200.
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def record(self, transcript_id: str, status: Literal["completed", "error"]) -> Notification:
        """Record one delivery; return the notification as now stored (durable on return)."""
        path = self._path(transcript_id)
        now = _now()
        try:
            seen = self._read(path)
            notification = Notification(
                transcript_id=transcript_id,
                status=status,  # final either way: a transcript is completed or error once
                first_received_at=seen.first_received_at if seen else now,
                last_received_at=now,
                deliveries=seen.deliveries + 1 if seen else 1,
            )
            self._write(path, notification.model_dump_json().encode())
        except Exception as exc:  # s3fs/botocore raise more than OSError
            raise self._error(exc, path, "recording a webhook notification in") from None
        return notification

    def pending(self) -> list[Notification]:
        """Every notification not yet acknowledged, oldest first."""
        try:
            if self._fs is None:
                paths = [str(p) for p in Path(self._folder).glob("*.json")]
                found = [n for n in map(self._read, paths) if n is not None]  # None: acknowledged
            else:
                names = [str(p).rsplit("/", 1)[-1] for p in self._fs.ls(self._folder, detail=False)]
                paths = [f"{self._folder}/{n}" for n in names if n.endswith(".json")]
                # One batch of concurrent GETs; a key acknowledged since the listing is omitted.
                bodies = self._fs.cat(paths, on_error="omit") if paths else {}
                found = [Notification.model_validate_json(data) for data in bodies.values()]
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._error(exc, self._folder, "reading the webhook notifications in") from None
        return sorted(found, key=lambda n: (n.first_received_at, n.transcript_id))

    def notified(self, transcript_ids: Collection[str]) -> dict[str, Notification]:
        """The pending notifications of ``transcript_ids`` only: one listing (a file's name is
        its transcript id), then a read of each of those files. What a run waiting on a few of
        many pending notifications checks every second or so (:mod:`voxlake.run.notified`)."""
        wanted = set(transcript_ids)
        try:
            if self._fs is None:
                names = os.listdir(self._folder)
            else:
                names = [str(p).rsplit("/", 1)[-1] for p in self._fs.ls(self._folder, detail=False)]
            found = {}
            for name in names:
                tid = name.removesuffix(".json")
                if name.endswith(".json") and tid in wanted:
                    note = self._read(self._path(tid))
                    if note is not None:  # acknowledged since the listing
                        found[tid] = note
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise self._error(exc, self._folder, "reading the webhook notifications in") from None
        return found

    def acknowledge(self, transcript_ids: Iterable[str]) -> None:
        """Forget these notifications (their transcripts are collected). Idempotent.

        A delivery that arrives afterwards is pending again: a consumer treats a notification
        of a transcript it already collected (its ledger says so) as done and acknowledges it.
        """
        for transcript_id in transcript_ids:
            path = self._path(transcript_id)
            try:
                if self._fs is None:
                    Path(path).unlink(missing_ok=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        self._fs.rm_file(path)
            except Exception as exc:
                raise self._error(exc, path, "acknowledging a webhook notification in") from None


def pending_notifications(output: str, *, s3: S3Options | None = None) -> list[Notification]:
    """The notifications recorded under ``output`` and not yet acknowledged, oldest first."""
    return NotificationStore(output, s3=s3).pending()


def acknowledge(output: str, transcript_ids: Iterable[str], *, s3: S3Options | None = None) -> None:
    """Remove the notifications of ``transcript_ids`` (collected) from ``output``'s pending ones."""
    NotificationStore(output, s3=s3).acknowledge(transcript_ids)


def create_app(
    store: NotificationStore, auth: WebhookAuth, collector: Collector | None = None
) -> Any:
    """The receiver's ASGI app (Starlette): ``POST`` :data:`WEBHOOK_PATH` records a notification.

    Replies: 200 recorded; 401 auth header missing or wrong; 400 not a notification; 413 body too
    large; 405 another method; 503 the store failed (AssemblyAI retries a 5xx).

    With ``collector`` (:mod:`voxlake.run.collector`), it runs beside the app for the app's
    lifetime and hears of each notification recorded; at shutdown, the round under way ends
    first.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from voxlake.errors import VoxlakeError

    header = auth.header_name.lower().encode("latin-1")
    # Striped, not one per transcript: a receiver running for months keeps a bounded set.
    locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]

    def refuse(request: Request, code: int, why: str) -> JSONResponse:
        # The client and the reason only: never a header value, never the body.
        client = request.client.host if request.client else "?"
        log.warning("webhook refused (%d) from %s: %s", code, client, why)
        return JSONResponse({"error": why}, status_code=code)

    async def receive(request: Request) -> JSONResponse:
        values = [value for name, value in request.scope["headers"] if name == header]
        if not auth.matches(values):
            why = "wrong" if values else "missing"
            return refuse(request, 401, f"{why} {auth.header_name} header")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return refuse(request, 413, "body too large for a notification")
        try:
            note = _Body.model_validate_json(body)
        except ValidationError:
            return refuse(
                request, 400, 'not a notification: want {"transcript_id": id, "status": s}'
            )
        stripe = hashlib.blake2b(note.transcript_id.encode(), digest_size=2).digest()
        try:
            async with locks[int.from_bytes(stripe) % _LOCK_STRIPES]:
                recorded = await run_in_threadpool(store.record, note.transcript_id, note.status)
        except VoxlakeError as exc:
            log.error("webhook for %s not recorded: %s", note.transcript_id, exc)
            return JSONResponse({"error": "not recorded; send it again"}, status_code=503)
        log.info(
            "webhook: %s %s (delivery %d)",
            recorded.transcript_id,
            recorded.status,
            recorded.deliveries,
        )
        if collector is not None:
            collector.notify()
        return JSONResponse({"recorded": recorded.transcript_id, "deliveries": recorded.deliveries})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if collector is None:
            yield
            return
        task = asyncio.create_task(collector.run(), name="voxlake-webhook-collector")
        try:
            yield
        finally:
            await collector.stop()
            await task

    return Starlette(routes=[Route(WEBHOOK_PATH, receive, methods=["POST"])], lifespan=lifespan)


def listen(host: str, port: int) -> tuple[socket.socket, str]:
    """A socket listening on ``host:port`` (``0``: any free port) and the receiver's URL on it.

    Bound before the server starts, so notifications that arrive meanwhile wait in the listen
    backlog instead of being refused. :class:`OSError` naming the address if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(512)
    shown = f"[{host}]" if ":" in host else host
    return sock, f"http://{shown}:{sock.getsockname()[1]}{WEBHOOK_PATH}"


def auth_from_env(header_name: str, variable: str) -> WebhookAuth:
    """:class:`WebhookAuth` with the value of the environment variable ``variable``."""
    value = os.environ.get(variable)
    if value is None:
        raise ConfigurationError(
            f"{variable} is not set: export the webhook auth header value in it (the value given "
            "to AssemblyAI as webhook_auth_header_value)"
        )
    return checked_auth(header_name, value, where=variable)


def checked_auth(header_name: str, value: str, *, where: str) -> WebhookAuth:
    """:class:`WebhookAuth`, or a :class:`ConfigurationError` naming what is wrong (no value)."""
    try:
        return WebhookAuth(header_name=header_name, header_value=SecretStr(value))
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ConfigurationError(f"webhook auth ({where}): {problems}") from None
