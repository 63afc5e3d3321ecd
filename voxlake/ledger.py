"""The ledger: what every run did to every item, durable at the output root.

Every submission is billed, so a run must know, before it pays, what earlier runs already paid
for. The ledger is an append-only log of status changes, stored beside the tables and in the
same storage (local folder or S3)::

    <root>/_ledger/events/<run_id>-<token>-<seq>.parquet   one file per append (a batch of events)
    <root>/_ledger/events/compacted-<token>.parquet        many appends merged (same schema)
    <root>/_ledger/lease.json                              who may submit for this root now

An item is identified by its **key**: ``sha256(source, source_fingerprint, options_hash)``, so
changed bytes (a new fingerprint) or changed options make a new item. Its status moves::

    submitting ──▶ submitted ──▶ completed
        │              │    └───▶ job_failed   (AssemblyAI's job ended in error)
        │              └────────▶ (poll timeout, fetch error: stays submitted; resumed)
        └──▶ (outcome unknown: stays submitting; the next run finds the job by its audio_url)
    failed      no job was created (upload error, refused submit, invalid row): retried free
    deferred    not submitted because the run's budget was reached: picked up next run

The one rule that makes paying twice impossible: ``submitting`` (with the ``audio_url``) is
durable *before* ``POST /v2/transcript`` is sent. Whatever instant a ``kill -9`` hits, the next
run either knows the transcript id or knows the unique upload URL to look the job up by in the
list endpoint before it resubmits (:meth:`voxlake.pipeline.TranscriptionRun.resolve_unknown`).
``completed`` is appended only after the item's rows are committed to the tables.

Files are written atomically (temp file + rename locally, one PUT on S3); no secrets or
presigned query strings are stored (URLs pass :func:`voxlake.redact.redact_url`). DuckDB reads
the whole log with ``read_parquet('<root>/_ledger/events/*.parquet')`` (docs/ledger.md).

Two runs at once: a run that submits holds the root's **lease** (:class:`Lease`), a small JSON
object with an expiry that a heartbeat renews. A second run refuses with a clear message, unless
it belongs to the same lease *group* (the shards of one backfill), or the holder is dead: on
the same host its pid is gone (a crashed run is taken over at once), elsewhere the lease has
expired.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import gc
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voxlake.errors import ConfigurationError, VoxlakeError
from voxlake.manifest import MediaItem
from voxlake.redact import redact_url
from voxlake.storage import output_filesystem, storage_error
from voxlake.tables import _as_arrow_fs, _atomic_write

logger = logging.getLogger(__name__)

LEDGER_DIR = "_ledger"
EVENTS_DIR = f"{LEDGER_DIR}/events"
LEASE_FILE = f"{LEDGER_DIR}/lease.json"
#: How long a lease lives without a heartbeat, and how often the heartbeat renews it.
LEASE_TTL_S = 300.0
HEARTBEAT_S = 60.0
#: An acquiring run merges the event files into one when there are more than this many.
COMPACT_ABOVE_FILES = 64
#: The tables' in-flight temp files (voxlake.tables._atomic_write) and ours.
_TEMP_SUFFIX = ".tmp"


class Status(StrEnum):
    submitting = "submitting"
    submitted = "submitted"
    completed = "completed"
    job_failed = "job_failed"
    failed = "failed"
    deferred = "deferred"


_UTC_US = pa.timestamp("us", tz="UTC")


def _f(name: str, type_: pa.DataType, description: str, *, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


EVENT_SCHEMA = pa.schema(
    [
        _f("item_key", pa.string(), "sha256(source, fingerprint, options)", nullable=False),
        _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
        _f("source", pa.string(), "Path or URL (no signed query)", nullable=False),
        _f("source_fingerprint", pa.string(), "Identity of the source bytes (docs/tables.md)"),
        _f("source_size", pa.int64(), "Size of the source in bytes"),
        _f("options_hash", pa.string(), "Fingerprint of the transcription options", nullable=False),
        _f("status", pa.string(), "New status (docs/ledger.md)", nullable=False),
        _f("audio_url", pa.string(), "The URL submitted (upload URL or source; no query string)"),
        _f("transcript_id", pa.string(), "AssemblyAI transcript id, once known"),
        _f("stage", pa.string(), "Where a failure happened (upload, submit, poll, fetch, write)"),
        _f("error", pa.string(), "Why the item failed or was deferred"),
        _f("audio_duration_s", pa.float64(), "Audio duration in seconds"),
        _f("run_id", pa.string(), "Prefect flow run that recorded the event", nullable=False),
        _f("at", _UTC_US, "When the event was recorded (UTC)", nullable=False),
    ],
    metadata={"description": "One row per status change of an item (docs/ledger.md)."},
)


def item_key(source: str, fingerprint: str | None, options_hash: str) -> str:
    """The ledger identity of an item: its source, the identity of its bytes, its options."""
    text = "\0".join((redact_url(source), fingerprint or "", options_hash))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def key_of(item: MediaItem) -> str:
    return item_key(item.source, item.fingerprint, item.options_hash)


@dataclass(frozen=True, slots=True)
class Event:
    item: MediaItem
    status: Status
    audio_url: str | None = None
    transcript_id: str | None = None
    stage: str | None = None
    error: str | None = None
    audio_duration_s: float | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


@dataclass(slots=True)
class ItemState:
    """The latest of an item key, and what its history says."""

    status: Status
    transcript_id: str | None
    audio_url: str | None
    at: dt.datetime
    submitting_at: dt.datetime | None  # the latest `submitting` event: bounds a job lookup
    ever_completed: bool


Action = Literal["new", "resume", "skip_done", "skip_failed"]


@dataclass(frozen=True, slots=True)
class Planned:
    """What this run does with one manifest item, decided from the ledger before any request."""

    item: MediaItem
    key: str
    action: Action
    state: ItemState | None
    retry: bool = False  # new, but an earlier run's attempt failed


def plan(
    items: Iterable[MediaItem],
    states: dict[str, ItemState],
    *,
    force: bool = False,
    retry_failed: bool = False,
) -> list[Planned]:
    """Decide each item's fate (docs/ledger.md has the table).

    - in flight in an earlier run (``submitting``/``submitted``): **resume** it; even with
      ``force`` — that job is paid for and this run wants its result;
    - ``force``: **new**, whatever happened before;
    - ever completed: **skip_done**;
    - its job ended in error: **skip_failed**, or **new** with ``retry_failed``;
    - failed before any job existed, or deferred by a budget: **new** (costs nothing extra).
    """
    planned = []
    # Items of one manifest share a handful of options objects (voxlake.manifest caches them),
    # and hashing options is most of a key's cost: hash each object once.
    hashes: dict[int, str] = {}
    for item in items:
        options_hash = hashes.get(id(item.options))
        if options_hash is None:
            options_hash = hashes[id(item.options)] = item.options_hash
        key = item_key(item.source, item.fingerprint, options_hash)
        state = states.get(key)
        action: Action = "new"
        if state is None:
            pass
        elif state.status in (Status.submitting, Status.submitted):
            action = "resume"
        elif force:
            pass
        elif state.ever_completed:
            action = "skip_done"
        elif state.status is Status.job_failed and not retry_failed:
            action = "skip_failed"
        retry = action == "new" and state is not None and state.status is not Status.deferred
        planned.append(Planned(item, key, action, state, retry))
    return planned


# --- errors -----------------------------------------------------------------------------------


class LeaseHeldError(VoxlakeError):
    """Another run holds the output root's lease: this run submits nothing. Terminal."""


class LeaseLostError(VoxlakeError):
    """This run's lease was taken over (its heartbeat stalled past the expiry). Terminal."""


# --- the lease --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    group: str
    run_id: str
    host: str
    pid: int
    acquired_at: str
    expires_at: str

    def expired(self, now: dt.datetime) -> bool:
        return dt.datetime.fromisoformat(self.expires_at) <= now

    def holder_dead(self) -> bool:
        """True only when the holder certainly died: it ran on this host and its pid is gone."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        return (
            f"run {self.run_id} (group {self.group}, host {self.host}, pid {self.pid}), "
            f"lease until {self.expires_at}"
        )


class _Store:
    """The few storage operations the ledger needs, on a local folder or through s3fs."""

    def __init__(self, fs: Any, root: str, *, local: bool) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.local = local
        self.arrow_fs = _as_arrow_fs(None if local else fs)

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def read_versioned(self, relative: str) -> tuple[bytes, str] | None:
        """The object's bytes and a version tag for :meth:`replace_if`, or None if absent."""
        path = self.path(relative)
        if self.local:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                return None
            return data, hashlib.sha256(data).hexdigest()
        from fsspec.asyn import sync

        bucket, _, key = path.partition("/")

        async def get() -> tuple[bytes, str]:
            # Body and ETag of one GET: the tag must belong to exactly these bytes.
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            return await response["Body"].read(), response["ETag"]

        try:
            body_and_tag: tuple[bytes, str] = sync(self.fs.loop, get)
        except FileNotFoundError:
            return None
        return body_and_tag

    def create(self, relative: str, data: bytes) -> bool:
        """Write only if absent; False if it exists (atomic: O_EXCL link / If-None-Match)."""
        path = self.path(relative)
        if self.local:
            tmp = self._write_temp(path, data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        try:
            self.fs.pipe_file(path, data, mode="create")
        except Exception as exc:  # s3fs maps 412 PreconditionFailed to various errors
            if _precondition_failed(exc):
                return False
            raise
        return True

    def replace_if(self, relative: str, data: bytes, tag: str) -> bool:
        """Replace only if the stored version is still ``tag`` (flock / If-Match)."""
        path = self.path(relative)
        if self.local:
            with self._locked():
                current = self.read_versioned(relative)
                if current is None or current[1] != tag:
                    return False
                os.replace(self._write_temp(path, data), path)
            return True
        bucket, _, key = path.partition("/")
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=tag)
        except Exception as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))

    def listdir(self, relative: str) -> list[str]:
        """Names of the visible ``.parquet`` files directly in a folder."""
        try:
            found = self.fs.ls(self.path(relative), detail=False)
        except FileNotFoundError:
            return []
        names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in found]
        return sorted(n for n in names if n.endswith(".parquet") and not n.startswith("."))

    def _write_temp(self, path: str, data: bytes) -> str:
        directory, name = path.rsplit("/", 1)
        tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}{_TEMP_SUFFIX}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return tmp

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The read-compare-replace of a local lease under an advisory lock: released by the
        # kernel if the process dies, so a kill -9 can never leave it held.
        with open(self.path(f"{LEDGER_DIR}/.lease.lock"), "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _precondition_failed(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}"
    return "PreconditionFailed" in text or "412" in text or isinstance(exc, FileExistsError)


class Lease:
    """The right to submit for one output root, shared by the runs of one ``group``."""

    def __init__(self, store: _Store, *, run_id: str, group: str | None) -> None:
        self._store = store
        self.run_id = run_id
        self.group = group or run_id
        self.acquired = False  # True: this run created (or took over) the lease
        self.lost = threading.Event()
        self._tag: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _info(self, now: dt.datetime, run_id: str | None = None) -> LeaseInfo:
        return LeaseInfo(
            group=self.group,
            run_id=run_id or self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            acquired_at=now.isoformat(),
            expires_at=(now + dt.timedelta(seconds=LEASE_TTL_S)).isoformat(),
        )

    def acquire(self) -> None:
        for _ in range(10):
            now = dt.datetime.now(dt.UTC)
            current = self._store.read_versioned(LEASE_FILE)
            if current is None:
                if self._store.create(LEASE_FILE, _encode(self._info(now))):
                    self.acquired = True
                    break
                continue
            data, tag = current
            held = LeaseInfo(**json.loads(data))
            if held.group == self.group:
                # A shard of the same backfill (or this run again): share it, keep the holder.
                self.acquired = held.run_id == self.run_id
                renewed = dataclasses.replace(held, expires_at=self._info(now).expires_at)
                if self._store.replace_if(LEASE_FILE, _encode(renewed), tag):
                    break
                continue
            if held.expired(now) or held.holder_dead():
                logger.warning("taking over the output root's lease from %s", held.describe())
                if self._store.replace_if(LEASE_FILE, _encode(self._info(now)), tag):
                    self.acquired = True
                    break
                continue
            raise LeaseHeldError(
                f"the output root {self._store.root} is in use by {held.describe()}. This run "
                "submitted nothing. Run again when that run has finished (a run that died on "
                "another machine releases the root when its lease expires)."
            )
        else:
            raise LeaseHeldError(f"could not take the lease of {self._store.root}: contended")
        current = self._store.read_versioned(LEASE_FILE)
        if current is None:  # written a moment ago: only another machine can have removed it
            raise LeaseLostError(f"the lease of {self._store.root} vanished as it was taken")
        self._tag = current[1]
        self._heartbeat = threading.Thread(target=self._beat, name="voxlake-lease", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._renew()
            except Exception as exc:  # storage blip: the next beat tries again before expiry
                logger.warning("lease heartbeat failed: %s", exc)

    def _renew(self) -> None:
        current = self._store.read_versioned(LEASE_FILE)
        if current is None or LeaseInfo(**json.loads(current[0])).group != self.group:
            logger.error("the output root's lease was taken over; stopping submissions")
            self.lost.set()
            return
        held = LeaseInfo(**json.loads(current[0]))
        renewed = dataclasses.replace(
            held, expires_at=self._info(dt.datetime.now(dt.UTC)).expires_at
        )
        self._store.replace_if(LEASE_FILE, _encode(renewed), current[1])

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLostError(
                f"this run lost the lease of {self._store.root} to another run; it stopped "
                "submitting. Run again to finish: the ledger knows what was submitted."
            )

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=30)
        if not self.acquired or self.lost.is_set():
            return  # a shard leaves the group's lease to the run that took it
        current = self._store.read_versioned(LEASE_FILE)
        if current is not None and LeaseInfo(**json.loads(current[0])).run_id == self.run_id:
            self._store.delete(LEASE_FILE)


def _encode(info: LeaseInfo) -> bytes:
    return json.dumps(asdict(info), sort_keys=True).encode()


# --- the ledger -------------------------------------------------------------------------------


class Ledger:
    """The ledger of one output root, opened by one run (:meth:`open`); use as a context."""

    def __init__(self, store: _Store, *, run_id: str, lease: Lease | None) -> None:
        self._store = store
        self.run_id = run_id
        self.lease = lease
        self._token = uuid.uuid4().hex[:8]
        self._seq = 0
        self._lock = threading.Lock()
        self.states: dict[str, ItemState] = {}

    @classmethod
    def open(
        cls,
        output: str,
        *,
        run_id: str,
        s3: Any | None = None,
        lease_group: str | None = None,
        read_only: bool = False,
        compact_above: int = COMPACT_ABOVE_FILES,
    ) -> Ledger:
        """Open the ledger of ``output``: check it is writable, take the lease, clean up, load.

        Everything here happens before the first upload, so a bad ``--output`` costs nothing.
        ``read_only`` (dry runs) only reads: no lease, no probe, no clean-up.
        """
        store = _open_store(output, s3, create=not read_only)
        lease = None
        if not read_only:
            lease = Lease(store, run_id=run_id, group=lease_group)
            try:
                lease.acquire()  # also the write probe: the first write of the run
            except VoxlakeError:
                raise
            except Exception as exc:
                raise _unwritable(output, exc) from None
        ledger = cls(store, run_id=run_id, lease=lease)
        if lease is not None and lease.acquired:
            # Only the run that took the lease: nobody else can be writing under the root now.
            ledger._remove_stale_temp_files()
            ledger._compact(compact_above)
        ledger.states = ledger.load()
        return ledger

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.lease is not None:
            self.lease.release()

    def lease_lost(self) -> bool:
        return self.lease is not None and self.lease.lost.is_set()

    def check_lease(self) -> None:
        """Raise :class:`LeaseLostError` if another run took the root over."""
        if self.lease is not None:
            self.lease.check()

    # --- writing ------------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> None:
        """Make ``events`` durable (one atomic file). Returns only once they are."""
        if not events:
            return
        if self.lease is None:
            raise RuntimeError("a read-only ledger records nothing")
        table = _events_table(events, self.run_id)
        with self._lock:
            name = f"{_safe(self.run_id)}-{self._token}-{self._seq:06d}.parquet"
            self._seq += 1
        _atomic_write(self._store.arrow_fs, self._store.path(f"{EVENTS_DIR}/{name}"), table)
        for event in events:
            key = key_of(event.item)
            self._apply(key, event.status, event.transcript_id, event.audio_url, event.at)

    # --- reading ------------------------------------------------------------------------------

    def read_events(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every event of the root, oldest first (ties: file name order, then row order).

        ``columns``: only these columns of :data:`EVENT_SCHEMA` (``at`` is always read, to
        sort by).
        """
        schema = EVENT_SCHEMA
        if columns is not None:
            wanted = set(columns) | {"at"}
            schema = pa.schema([f for f in EVENT_SCHEMA if f.name in wanted])
        names = self._store.listdir(EVENTS_DIR)
        if not names:
            return schema.empty_table()

        def read(name: str) -> pa.Table:
            path = self._store.path(f"{EVENTS_DIR}/{name}")
            return pq.read_table(
                path, filesystem=self._store.arrow_fs, schema=schema, columns=schema.names
            )

        with ThreadPoolExecutor(max_workers=16) as pool:
            tables = list(pool.map(read, names))
        table = pa.concat_tables(tables)
        return table.sort_by([("at", "ascending")])

    def load(self) -> dict[str, ItemState]:
        """Every item key's state: its events applied in :meth:`read_events` order."""
        self.states = _fold(self.read_events(columns=_STATE_COLUMNS))
        return self.states

    def _apply(
        self,
        key: str,
        status: Status,
        transcript_id: str | None,
        audio_url: str | None,
        at: dt.datetime,
    ) -> None:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = ItemState(status, None, None, at, None, False)
        state.status, state.at = status, at
        if status is Status.submitting:
            state.submitting_at = at
            state.transcript_id = None
        if audio_url is not None:
            state.audio_url = audio_url
        if transcript_id is not None:
            state.transcript_id = transcript_id
        if status is Status.completed:
            state.ever_completed = True

    # --- housekeeping -------------------------------------------------------------------------

    def _compact(self, above: int) -> None:
        names = self._store.listdir(EVENTS_DIR)
        if len(names) <= above:
            return
        table = self.read_events()
        path = self._store.path(f"{EVENTS_DIR}/compacted-{uuid.uuid4().hex}.parquet")
        _atomic_write(self._store.arrow_fs, path, table, compression="zstd")
        # A crash between the write and these deletes leaves duplicates, which reading
        # tolerates: applying the same event twice gives the same state.
        for name in names:
            self._store.delete(f"{EVENTS_DIR}/{name}")
        logger.info("ledger: merged %d event files into one", len(names))

    def _remove_stale_temp_files(self) -> None:
        if not self._store.local:
            return  # object stores publish whole objects only: nothing half-written is visible
        removed = 0
        for folder, dirs, names in os.walk(self._store.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.startswith(".") and name.endswith(_TEMP_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))
                        removed += 1
        if removed:
            logger.info("removed %d temp files left by an interrupted run", removed)


_STATE_COLUMNS = ("item_key", "status", "transcript_id", "audio_url", "at")
_STATUSES = {s.value: s for s in Status}
_MICRO = dt.timedelta(microseconds=1)


def _fold(table: pa.Table) -> dict[str, ItemState]:
    """The state of every item key after applying ``table``'s rows in order with ``_apply``.

    Vectorised, so that a root with hundreds of thousands of events loads in about a second:
    the columns are reduced per key with Arrow and NumPy, and Python objects are made once per
    key instead of once per event. Per key, the same result as ``_apply`` row by row: the last
    row gives ``status`` and ``at``; the last ``submitting`` row ``submitting_at``; the last
    non-null ``audio_url``; the last non-null ``transcript_id`` at or after the last
    ``submitting`` row (which resets it); ``ever_completed`` whether any row is ``completed``.
    """
    n = table.num_rows
    if n == 0:
        return {}
    cols = {name: table[name].combine_chunks() for name in _STATE_COLUMNS}
    encoded = cols["item_key"].dictionary_encode()
    key_index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    keys = encoded.dictionary.to_pylist()
    rows = np.arange(n, dtype=np.int64)

    def last_row(where: np.ndarray | None) -> np.ndarray:
        """Per key, the last row for which ``where`` holds; -1 if none."""
        out = np.full(len(keys), -1, dtype=np.int64)
        chosen = rows if where is None else rows[where]
        np.maximum.at(out, key_index[chosen], chosen)
        return out

    def flags(array: pa.Array) -> np.ndarray:
        result: np.ndarray = array.to_numpy(zero_copy_only=False)
        return result

    status = cols["status"]
    known = flags(pc.is_in(status, value_set=pa.array(list(_STATUSES))))
    if not known.all():
        Status(status[int(np.argmin(known))].as_py())  # raises ValueError, as _apply's caller
    last = last_row(None)
    last_submitting = last_row(flags(pc.equal(status, Status.submitting.value)))
    completed = last_row(flags(pc.equal(status, Status.completed.value))) >= 0
    last_url = last_row(flags(cols["audio_url"].is_valid()))
    last_tid = last_row(
        flags(cols["transcript_id"].is_valid()) & (rows >= last_submitting[key_index])
    )

    def pick(name: str, at_rows: np.ndarray) -> list[Any]:
        values: list[Any] = cols[name].take(pa.array(at_rows, mask=at_rows < 0)).to_pylist()
        return values

    # Arrow makes a zone-aware datetime ~10x slower than timedelta arithmetic does: the same
    # values (microseconds since the epoch, the schema's unit) in the zone Arrow gives them.
    epoch = dt.datetime(1970, 1, 1, tzinfo=cols["at"][0].as_py().tzinfo)

    def pick_at(at_rows: np.ndarray) -> list[dt.datetime | None]:
        micros = cols["at"].take(pa.array(at_rows, mask=at_rows < 0)).cast(pa.int64())
        return [None if v is None else epoch + _MICRO * v for v in micros.to_pylist()]

    with _no_gc():  # 100,000s of new objects, none cyclic: spare the collector's passes
        return {
            key: ItemState(_STATUSES.get(st) or Status(st), tid, url, at, submitting_at, bool(done))
            for key, st, tid, url, at, submitting_at, done in zip(
                keys,
                pick("status", last),
                pick("transcript_id", last_tid),
                pick("audio_url", last_url),
                pick_at(last),
                pick_at(last_submitting),
                completed.tolist(),
                strict=True,
            )
        }


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused (and restored as it was) for a bulk build."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _events_table(events: Sequence[Event], run_id: str) -> pa.Table:
    rows: dict[str, list[Any]] = {f.name: [] for f in EVENT_SCHEMA}
    for e in events:
        item = e.item
        rows["item_key"].append(key_of(item))
        rows["media_id"].append(item.media_id)
        rows["source"].append(redact_url(item.source))
        rows["source_fingerprint"].append(item.fingerprint)
        rows["source_size"].append(item.size)
        rows["options_hash"].append(item.options_hash)
        rows["status"].append(e.status.value)
        rows["audio_url"].append(_no_query(e.audio_url))
        rows["transcript_id"].append(e.transcript_id)
        rows["stage"].append(e.stage)
        rows["error"].append(e.error)
        rows["audio_duration_s"].append(e.audio_duration_s)
        rows["run_id"].append(run_id)
        rows["at"].append(e.at)
    return pa.Table.from_pydict(rows, schema=EVENT_SCHEMA)


def _no_query(url: str | None) -> str | None:
    """An audio URL as the ledger keeps it: never a query string (presigned signatures)."""
    if url is None:
        return None
    return redact_url(url).split("?", 1)[0].split("#", 1)[0]


def comparable_url(url: str | None) -> str | None:
    """The form in which a listed job's ``audio_url`` is compared with the ledger's."""
    return _no_query(url)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64]


def _open_store(output: str, s3: Any | None, *, create: bool) -> _Store:
    fs, root = output_filesystem(output, s3)
    if fs is not None:
        return _Store(fs, root, local=False)
    import fsspec

    root = os.path.abspath(output)
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigurationError(
            f"output {output!r} is a file, not a folder: choose a folder for --output "
            "(it is created if missing). Nothing was uploaded or submitted."
        )
    if create:
        try:
            os.makedirs(os.path.join(root, EVENTS_DIR), exist_ok=True)
        except OSError as exc:
            raise _unwritable(output, exc) from None
    return _Store(fsspec.filesystem("file"), root, local=True)


def _unwritable(output: str, exc: BaseException) -> VoxlakeError:
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        reason = exc.strerror or str(exc)
        return ConfigurationError(
            f"output {output!r} is not writable ({reason}): choose a folder you can write to. "
            "Nothing was uploaded or submitted."
        )
    err = storage_error(exc, output, "writing to the output")
    return ConfigurationError(f"{err} Nothing was uploaded or submitted.")
