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
list endpoint before it resubmits (:func:`voxlake.run.submit.resolve_unknown`).
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
import functools
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    state: ItemState | None  # the ledger's state of a job to **resume**; None otherwise
    retry: bool = False  # new, but an earlier run's attempt failed


def plan(
    items: Iterable[MediaItem],
    states: States,
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
    items = list(items)
    # Items of one manifest share a handful of options objects (voxlake.manifest caches them),
    # and hashing options is most of a key's cost: hash each object once.
    hashes: dict[int, str] = {}
    keys = []
    for item in items:
        options_hash = hashes.get(id(item.options))
        if options_hash is None:
            options_hash = hashes[id(item.options)] = item.options_hash
        keys.append(item_key(item.source, item.fingerprint, options_hash))
    # One vectorised lookup for the whole manifest: an ItemState is made only for a resume.
    codes, ever_completed = states.codes(keys)
    planned = []
    for item, key, code, done in zip(
        items, keys, codes.tolist(), ever_completed.tolist(), strict=True
    ):
        status = None if code < 0 else _STATUS_BY_CODE[code]
        action: Action = "new"
        if status is None:
            pass
        elif status in (Status.submitting, Status.submitted):
            action = "resume"
        elif force:
            pass
        elif done:
            action = "skip_done"
        elif status is Status.job_failed and not retry_failed:
            action = "skip_failed"
        retry = action == "new" and status is not None and status is not Status.deferred
        state = states.get(key) if action == "resume" else None
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
        # Files read at once: an object store's latency wants many requests in flight; locally
        # more threads only add per-thread allocator arenas (measured: +40 MB for 300 files).
        self.parallel_reads = 2 if local else 16

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
        self.states = States()

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

        with ThreadPoolExecutor(self._store.parallel_reads) as pool:
            table = pa.concat_tables(pool.map(read, names))
        return table.sort_by([("at", "ascending")])

    def load(self) -> States:
        """Every item key's state: its events applied in :meth:`read_events` order.

        Two passes over the event files, so that settled items (the many) cost a few bytes:
        the keys, statuses and times of every event first; then the upload URLs and transcript
        ids, only of the items still open (in flight, failed, deferred), and of the others only
        if :meth:`States.get` ever asks for one.
        """
        for _ in range(3):
            names = self._store.listdir(EVENTS_DIR)
            try:
                with ThreadPoolExecutor(self._store.parallel_reads) as pool:
                    logs = list(pool.map(lambda name: _Log.read(self._events_file(name)), names))
                offsets = np.cumsum([0] + [len(log.status) for log in logs]).tolist()
                files = list(zip(names, offsets, strict=False))  # offsets: one more, the total
                self.states = _fold(_Log.concat(logs), functools.partial(self._read_details, files))
            except FileNotFoundError:
                continue  # another run merged the files while we read them: read again
            return self.states
        raise VoxlakeError(f"the ledger under {self._store.root} kept changing while being read")

    def _read_details(
        self, files: list[tuple[str, int]], keep: Callable[[np.ndarray], np.ndarray]
    ) -> _Details:
        """Pass 2 over ``files`` (name, first row number), keeping the rows ``keep`` says."""

        def one(file: tuple[str, int]) -> _Details:
            return _Details.read(self._events_file(file[0]), file[1], keep)

        with ThreadPoolExecutor(self._store.parallel_reads) as pool:
            return _Details.concat(list(pool.map(one, files)))

    def _events_file(self, name: str) -> pq.ParquetFile:
        path = self._store.path(f"{EVENTS_DIR}/{name}")
        # Opened whole: event files are small, or one compacted file read batch by batch.
        return pq.ParquetFile(self._store.arrow_fs.open_input_file(path))

    def _apply(
        self,
        key: str,
        status: Status,
        transcript_id: str | None,
        audio_url: str | None,
        at: dt.datetime,
    ) -> None:
        state = self.states.edit(key, status, at)
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


#: A status's code in :class:`States` is its position here.
_STATUS_BY_CODE = tuple(Status)
_STATUS_VALUES = pa.array([s.value for s in _STATUS_BY_CODE])
_CODE = {s: i for i, s in enumerate(_STATUS_BY_CODE)}
_MICRO = dt.timedelta(microseconds=1)
_NO_TIME = np.iinfo(np.int64).min
_UTC_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: Rows decoded at a time: decoding whole column chunks at once costs several times their size.
_BATCH_ROWS = 65_536


class States(Mapping[str, ItemState]):
    """Every item key's state: the log folded into one entry per key.

    Kept as columns (a few bytes per key) rather than as objects, because a run over a
    100,000-item manifest asks only "which of these are done?" (:meth:`codes`, vectorised) and
    needs a whole :class:`ItemState` for the few it resumes; :meth:`get` makes one on demand.
    Upload URLs and transcript ids are loaded for the open items only, and for the settled
    ones on the first :meth:`get` of one. What this run appends is kept as objects.
    """

    def __init__(self, folded: _Folded | None = None) -> None:
        self._folded = folded
        self._keys = folded.keys if folded else pa.array([], pa.string())
        self._index: dict[str, int] | None = None  # key -> position, built on first get()
        self._changed: dict[str, ItemState] = {}

    def codes(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``keys``: its status's position in ``_STATUS_BY_CODE`` (-1: unknown to
        the ledger), and whether it was ever completed."""
        codes = np.full(len(keys), -1, dtype=np.int64)
        done = np.zeros(len(keys), dtype=bool)
        if self._folded is not None:
            found = pc.index_in(pa.array(keys, pa.string()), value_set=self._keys)
            at = found.fill_null(-1).to_numpy().astype(np.int64)
            known = at >= 0
            codes[known] = self._folded.status[at[known]]
            done[known] = self._folded.ever_completed[at[known]]
        if self._changed:
            for i, key in enumerate(keys):
                if (state := self._changed.get(key)) is not None:
                    codes[i] = _CODE[state.status]
                    done[i] = state.ever_completed
        return codes, done

    def get(self, key: str, default: Any = None) -> Any:  # Mapping's signature
        state = self._changed.get(key)
        if state is not None or self._folded is None:
            return state if state is not None else default
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self._keys.to_pylist())}
        i = self._index.get(key)
        return default if i is None else self._folded.state(i)

    def __getitem__(self, key: str) -> ItemState:
        state: ItemState | None = self.get(key)
        if state is None:
            raise KeyError(key)
        return state

    def __iter__(self) -> Iterator[str]:
        yield from self._changed
        for key in self._keys.to_pylist():
            if key not in self._changed:
                yield key

    def __len__(self) -> int:
        if not self._changed:
            return len(self._keys)
        return sum(1 for _ in self)

    def edit(self, key: str, status: Status, at: dt.datetime) -> ItemState:
        """The state of ``key`` to change in place (this run's appends)."""
        state = self._changed.get(key) or self.get(key)
        if state is None:
            state = ItemState(status, None, None, at, None, False)
        self._changed[key] = state
        return state


def _time(micros: int) -> dt.datetime | None:
    # Zone-aware datetimes from Arrow are ~10x slower to make than this arithmetic (same values).
    return None if micros == _NO_TIME else _UTC_EPOCH + _MICRO * micros


@dataclass(frozen=True, slots=True)
class _Log:
    """Pass 1: of every event, in file then row order, the item key, status code and time."""

    keys: pa.ChunkedArray
    status: np.ndarray  # int8 codes
    at: np.ndarray  # int64 microseconds

    @classmethod
    def read(cls, file: pq.ParquetFile) -> _Log:
        keys: list[pa.Array] = []
        status: list[np.ndarray] = []
        at: list[np.ndarray] = []
        for batch in file.iter_batches(
            batch_size=_BATCH_ROWS, columns=["item_key", "status", "at"], use_threads=False
        ):
            found = pc.index_in(batch["status"], value_set=_STATUS_VALUES)
            if found.null_count:
                unknown = found.is_null().to_numpy(zero_copy_only=False)
                Status(batch["status"][int(np.argmax(unknown))].as_py())  # raises ValueError
            keys.append(batch["item_key"])
            status.append(found.to_numpy(zero_copy_only=False).astype(np.int8))
            at.append(batch["at"].cast(pa.int64()).to_numpy(zero_copy_only=False))
        return cls._of(keys, status, at)

    @classmethod
    def concat(cls, logs: Sequence[_Log]) -> _Log:
        return cls._of(
            [c for log in logs for c in log.keys.chunks],
            [log.status for log in logs],
            [log.at for log in logs],
        )

    @staticmethod
    def _of(keys: list[pa.Array], status: list[np.ndarray], at: list[np.ndarray]) -> _Log:
        return _Log(
            pa.chunked_array(keys, pa.string()),
            np.concatenate(status) if status else np.empty(0, np.int8),
            np.concatenate(at) if at else np.empty(0, np.int64),
        )


@dataclass(frozen=True, slots=True)
class _Details:
    """Pass 2: the non-null transcript ids and upload URLs of the rows kept, with their rows."""

    tid_rows: np.ndarray
    tid: pa.ChunkedArray
    url_rows: np.ndarray
    url: pa.ChunkedArray

    @classmethod
    def read(
        cls, file: pq.ParquetFile, offset: int, keep: Callable[[np.ndarray], np.ndarray]
    ) -> _Details:
        parts: dict[str, tuple[list[np.ndarray], list[pa.Array]]] = {
            "transcript_id": ([], []),
            "audio_url": ([], []),
        }
        for batch in file.iter_batches(
            batch_size=_BATCH_ROWS, columns=list(parts), use_threads=False
        ):
            kept = keep(np.arange(offset, offset + batch.num_rows, dtype=np.int64))
            for name, (rows, values) in parts.items():
                mask = kept & batch[name].is_valid().to_numpy(zero_copy_only=False)
                rows.append(np.flatnonzero(mask) + offset)
                values.append(batch[name].filter(pa.array(mask)))
            offset += batch.num_rows
        return cls._of(*parts["transcript_id"], *parts["audio_url"])

    @classmethod
    def concat(cls, parts: Sequence[_Details]) -> _Details:
        return cls._of(
            [p.tid_rows for p in parts],
            [c for p in parts for c in p.tid.chunks],
            [p.url_rows for p in parts],
            [c for p in parts for c in p.url.chunks],
        )

    @staticmethod
    def _of(
        tid_rows: list[np.ndarray],
        tid: list[pa.Array],
        url_rows: list[np.ndarray],
        url: list[pa.Array],
    ) -> _Details:
        def rows(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, np.int64)

        return _Details(
            rows(tid_rows),
            pa.chunked_array(tid, pa.string()),
            rows(url_rows),
            pa.chunked_array(url, pa.string()),
        )


class _Folded:
    """The per-key result of :func:`_fold`, and the order it was folded in (for pass 2)."""

    def __init__(
        self, log: _Log, read_details: Callable[[Callable[[np.ndarray], np.ndarray]], _Details]
    ) -> None:
        n = len(log.status)
        self._order = np.argsort(log.at, kind="stable")  # row numbers in log order
        self._pos = np.empty(n, np.int64)  # each row's place in log order
        self._pos[self._order] = np.arange(n, dtype=np.int64)
        encoded = log.keys.combine_chunks().dictionary_encode()
        self._key_index = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.keys: pa.Array = encoded.dictionary
        del encoded
        self._read_details = read_details

        last = self._last_row(None)
        last_submitting = self._last_row(np.flatnonzero(log.status == _CODE[Status.submitting]))
        self.status: np.ndarray = log.status[last]
        self.ever_completed = np.zeros(len(self.keys), dtype=bool)
        self.ever_completed[self._key_index[log.status == _CODE[Status.completed]]] = True
        self.at: np.ndarray = log.at[last]
        self.submitting_at = np.where(
            last_submitting >= 0, log.at[np.maximum(last_submitting, 0)], _NO_TIME
        )
        self._submitting_pos = np.where(
            last_submitting >= 0, self._pos[np.maximum(last_submitting, 0)], -1
        )
        # The open items' details now (a run resumes them); the settled ones' if ever asked.
        self._detailed = self.status != _CODE[Status.completed]
        self._tid, self._url = self._details(self._detailed)

    def state(self, i: int) -> ItemState:
        if not self._detailed[i]:
            self._detailed = np.ones(len(self.keys), dtype=bool)
            self._tid, self._url = self._details(self._detailed)
        return ItemState(
            _STATUS_BY_CODE[self.status[i]],
            self._tid[i].as_py(),
            self._url[i].as_py(),
            _UTC_EPOCH + _MICRO * int(self.at[i]),  # never null: the schema says so
            _time(int(self.submitting_at[i])),
            bool(self.ever_completed[i]),
        )

    def _last_row(self, rows: np.ndarray | None) -> np.ndarray:
        """Per key, the one of ``rows`` (default: all) last in log order; -1 if none."""
        out = np.full(len(self.keys), -1, dtype=np.int64)
        chosen = slice(None) if rows is None else rows
        np.maximum.at(out, self._key_index[chosen], self._pos[chosen])
        return np.where(out >= 0, self._order[np.maximum(out, 0)], -1)

    def _details(self, wanted: np.ndarray) -> tuple[pa.Array, pa.Array]:
        """Per key (null unless ``wanted``): the last non-null ``audio_url``, and the last
        non-null ``transcript_id`` at or after the last ``submitting`` event (which resets
        it)."""
        if not wanted.any():
            nulls = pa.nulls(len(self.keys), pa.string())
            return nulls, nulls

        def keep(rows: np.ndarray) -> np.ndarray:
            kept: np.ndarray = wanted[self._key_index[rows]]
            return kept

        found = self._read_details(keep)
        tid_rows = found.tid_rows[
            self._pos[found.tid_rows] >= self._submitting_pos[self._key_index[found.tid_rows]]
        ]

        def value_at(rows: np.ndarray, values: pa.ChunkedArray, value_rows: np.ndarray) -> pa.Array:
            taken = values.take(pa.array(np.searchsorted(value_rows, rows), mask=rows < 0))
            return taken.combine_chunks() if isinstance(taken, pa.ChunkedArray) else taken

        return (
            value_at(self._last_row(tid_rows), found.tid, found.tid_rows),
            value_at(self._last_row(found.url_rows), found.url, found.url_rows),
        )


def _fold(
    log: _Log, read_details: Callable[[Callable[[np.ndarray], np.ndarray]], _Details]
) -> States:
    """The state of every item key after applying the log's events in log order with ``_apply``.

    Log order is by ``at``, ties in file name then row order (as :meth:`Ledger.read_events`).
    Vectorised, without sorting or copying the string columns, so that hundreds of thousands
    of events fold in about a second and a few dozen MB: per key, the last event gives
    ``status`` and ``at``; the last ``submitting`` event ``submitting_at``; the last non-null
    ``audio_url``; the last non-null ``transcript_id`` at or after the last ``submitting`` event
    (which resets it); ``ever_completed`` whether any event is ``completed``.
    """
    if len(log.status) == 0:
        return States()
    return States(_Folded(log, read_details))


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
