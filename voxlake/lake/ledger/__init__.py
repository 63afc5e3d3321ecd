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

    completed / job_failed ──▶ deleting ──▶ deleted   (the transcript at AssemblyAI, after its
                                                        rows: --delete-after-collect, purge)

The one rule that makes paying twice impossible: ``submitting`` (with the ``audio_url``) is
durable *before* ``POST /v2/transcript`` is sent. Whatever instant a ``kill -9`` hits, the next
run either knows the transcript id or knows the unique upload URL to look the job up by in the
list endpoint before it resubmits (:func:`voxlake.run.submit.resolve_unknown`).
``completed`` is appended only after the item's rows are committed to the tables.

Files are published atomically (:meth:`voxlake.lake.root.OutputRoot.publish`); no secrets or
presigned query strings are stored (URLs pass :func:`voxlake.redact.redact_url`). DuckDB reads
the whole log with ``read_parquet('<root>/_ledger/events/*.parquet')`` (docs/ledger.md).

The package, by concern: :mod:`.events` (schema, keys), :mod:`.states` (the log folded per key),
:mod:`.planning` (new / resume / skip), :mod:`.lease`, :mod:`.store` (conditional writes); this
module opens a root's ledger, appends, reads and compacts.

Two runs at once: a run that submits holds the root's **lease** (:class:`Lease`), a small JSON
object with an expiry that a heartbeat renews. A second run refuses with a clear message, unless
it belongs to the same lease *group* (the shards of one backfill), or the holder is dead: on
the same host its pid is gone (a crashed run is taken over at once), elsewhere the lease has
expired.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voxlake.errors import VoxlakeError
from voxlake.lake.ledger.events import (
    DELETION,
    EVENT_SCHEMA,
    EVENTS_DIR,
    LEDGER_DIR,
    RECORDED_COLUMNS,
    Event,
    RecordedItem,
    Status,
    comparable_url,
    events_table,
    item_key,
    key_of,
    safe_name,
)
from voxlake.lake.ledger.lease import (
    HEARTBEAT_S,
    LEASE_FILE,
    LEASE_TTL_S,
    Lease,
    LeaseHeldError,
    LeaseInfo,
    LeaseLostError,
)
from voxlake.lake.ledger.planning import Action, Planned, plan
from voxlake.lake.ledger.states import Details, EventLog, ItemState, States, fold
from voxlake.lake.ledger.store import Store, open_store, unwritable
from voxlake.lake.root import OutputRoot
from voxlake.storage import S3Options

__all__ = [
    "COMPACT_ABOVE_FILES",
    "DELETION",
    "EVENTS_DIR",
    "EVENT_SCHEMA",
    "HEARTBEAT_S",
    "LEASE_FILE",
    "LEASE_TTL_S",
    "LEDGER_DIR",
    "Action",
    "Event",
    "Held",
    "HeldTranscript",
    "ItemState",
    "Lease",
    "LeaseHeldError",
    "LeaseInfo",
    "LeaseLostError",
    "Ledger",
    "Planned",
    "RecordedItem",
    "States",
    "Status",
    "comparable_url",
    "item_key",
    "key_of",
    "plan",
]

logger = logging.getLogger(__name__)

#: An acquiring run merges the event files into one when there are more than this many.
COMPACT_ABOVE_FILES = 64


@dataclass(frozen=True, slots=True)
class HeldTranscript:
    """A collected transcript still at AssemblyAI: its item, its id, and whether a run asked
    for its deletion (``deleting``) and has not done it yet."""

    item: RecordedItem
    transcript_id: str
    requested: bool


@dataclass(frozen=True, slots=True)
class Held:
    """What the ledger knows is at AssemblyAI (:meth:`Ledger.held`)."""

    transcripts: list[HeldTranscript]  # collected (completed or job failed), not deleted
    deleted: int  # transcripts recorded deleted
    in_flight: int  # jobs not collected yet: never deleted (a run collects them first)

    @property
    def requested(self) -> list[HeldTranscript]:
        return [h for h in self.transcripts if h.requested]


class Ledger:
    """The ledger of one output root, opened by one run (:meth:`open`); use as a context."""

    def __init__(self, store: Store, *, run_id: str, lease: Lease | None) -> None:
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
        output: str | OutputRoot,
        *,
        run_id: str,
        s3: S3Options | None = None,
        lease_group: str | None = None,
        read_only: bool = False,
        compact_above: int = COMPACT_ABOVE_FILES,
    ) -> Ledger:
        """Open the ledger of ``output``: check it is writable, take the lease, clean up, load.

        Everything here happens before the first upload, so a bad ``--output`` costs nothing.
        ``read_only`` (dry runs) only reads: no lease, no probe, no clean-up.
        """
        store = open_store(output, s3, create=not read_only)
        lease = None
        if not read_only:
            lease = Lease(store, run_id=run_id, group=lease_group)
            try:
                lease.acquire()  # also the write probe: the first write of the run
            except VoxlakeError:
                raise
            except Exception as exc:
                raise unwritable(store.output.url, exc) from None
        ledger = cls(store, run_id=run_id, lease=lease)
        if lease is not None and lease.acquired:
            # Only the run that took the lease: nobody else can be writing under the root now.
            ledger._remove_stale_temp_files()
            ledger._compact(compact_above)
        ledger.states = ledger.load()
        return ledger

    @property
    def output(self) -> OutputRoot:
        """The output root this ledger belongs to (the tables beside it)."""
        return self._store.output

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
        table = events_table(events, self.run_id)
        with self._lock:
            name = f"{safe_name(self.run_id)}-{self._token}-{self._seq:06d}.parquet"
            self._seq += 1
        self._store.output.publish_parquet(f"{EVENTS_DIR}/{name}", table)
        for event in events:
            key = key_of(event.item)
            self._apply(key, event.status, event.transcript_id, event.audio_url, event.at)

    # --- reading ------------------------------------------------------------------------------

    def held(self) -> Held:
        """The transcripts the ledger knows are still at AssemblyAI (docs/ledger.md).

        Read from the events themselves, not from the folded states: an item submitted again
        (``--force``) has a new transcript, and its earlier one is still held too.
        """
        table = self.read_events(RECORDED_COLUMNS)
        table = table.filter(pc.is_valid(table["transcript_id"]))
        status, tid = table["status"], table["transcript_id"]

        def ids(*statuses: Status) -> pa.Array:
            wanted = pa.array([s.value for s in statuses])
            found = pc.unique(tid.filter(pc.is_in(status, value_set=wanted)))
            return found.combine_chunks() if isinstance(found, pa.ChunkedArray) else found

        gone = ids(Status.deleted)
        requested = set(ids(Status.deleting).to_pylist())
        outcomes = pa.array([Status.completed.value, Status.job_failed.value])
        collected = table.filter(
            pc.and_(
                pc.is_in(status, value_set=outcomes),
                pc.invert(pc.is_in(tid, value_set=gone)),
            )
        )
        latest: dict[str, HeldTranscript] = {}  # rows are oldest first: the last one wins
        for row in collected.to_pylist():
            item = RecordedItem.of_event(row)
            tid_ = row["transcript_id"]
            latest[tid_] = HeldTranscript(item, tid_, tid_ in requested)
        in_flight = ids(Status.submitted, Status.submitting)
        known = pa.concat_arrays([gone, ids(Status.completed, Status.job_failed)])
        flying = pc.count(pc.filter(in_flight, pc.invert(pc.is_in(in_flight, value_set=known))))
        return Held(
            transcripts=sorted(latest.values(), key=lambda h: (h.item.media_id, h.transcript_id)),
            deleted=len(gone),
            in_flight=flying.as_py(),
        )

    def read_events(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every event of the root, oldest first (ties: file name order, then row order).

        ``columns``: only these columns of :data:`EVENT_SCHEMA` (``at`` is always read, to
        sort by).
        """
        schema = EVENT_SCHEMA
        if columns is not None:
            wanted = set(columns) | {"at"}
            schema = pa.schema([f for f in EVENT_SCHEMA if f.name in wanted])
        names = self._store.output.list_files(EVENTS_DIR)
        if not names:
            return schema.empty_table()

        def read(name: str) -> pa.Table:
            path = self._store.path(f"{EVENTS_DIR}/{name}")
            return pq.read_table(
                path, filesystem=self._store.output.fs, schema=schema, columns=schema.names
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
            names = self._store.output.list_files(EVENTS_DIR)
            try:
                with ThreadPoolExecutor(self._store.parallel_reads) as pool:
                    logs = list(pool.map(lambda n: EventLog.read(self._events_file(n)), names))
                offsets = np.cumsum([0] + [len(log.status) for log in logs]).tolist()
                files = list(zip(names, offsets, strict=False))  # offsets: one more, the total
                details = functools.partial(self._read_details, files)
                self.states = fold(EventLog.concat(logs), details)
            except FileNotFoundError:
                continue  # another run merged the files while we read them: read again
            return self.states
        raise VoxlakeError(f"the ledger under {self._store.root} kept changing while being read")

    def _read_details(
        self, files: list[tuple[str, int]], keep: Callable[[np.ndarray], np.ndarray]
    ) -> Details:
        """Pass 2 over ``files`` (name, first row number), keeping the rows ``keep`` says."""

        def one(file: tuple[str, int]) -> Details:
            return Details.read(self._events_file(file[0]), file[1], keep)

        with ThreadPoolExecutor(self._store.parallel_reads) as pool:
            return Details.concat(list(pool.map(one, files)))

    def _events_file(self, name: str) -> pq.ParquetFile:
        # Opened whole: event files are small, or one compacted file read batch by batch.
        return pq.ParquetFile(self._store.output.open_input_file(f"{EVENTS_DIR}/{name}"))

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
        names = self._store.output.list_files(EVENTS_DIR)
        if len(names) <= above:
            return
        table = self.read_events()
        name = f"{EVENTS_DIR}/compacted-{uuid.uuid4().hex}.parquet"
        self._store.output.publish_parquet(name, table, compression="zstd")
        # A crash between the write and these deletes leaves duplicates, which reading
        # tolerates: applying the same event twice gives the same state.
        for name in names:
            self._store.delete(f"{EVENTS_DIR}/{name}")
        logger.info("ledger: merged %d event files into one", len(names))

    def _remove_stale_temp_files(self) -> None:
        removed = self._store.output.remove_temp_files()
        if removed:
            logger.info("removed %d temp files left by an interrupted run", removed)
