"""Every item key's state: the ledger's log folded into one entry per key, kept as columns.

The fold reads the event files in two streamed passes (:class:`EventLog`, then :class:`Details`
for the items that need them) so that a 100,000-item ledger folds in about a second and a few
dozen MB (benchmarks/ledger_bench.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from voxlake.lake.ledger.events import Status


@dataclass(slots=True)
class ItemState:
    """The latest of an item key, and what its history says."""

    status: Status
    transcript_id: str | None
    audio_url: str | None
    at: dt.datetime
    submitting_at: dt.datetime | None  # the latest `submitting` event: bounds a job lookup
    ever_completed: bool


#: A status's code in :class:`States` is its position here.
STATUS_BY_CODE = tuple(Status)
_STATUS_VALUES = pa.array([s.value for s in STATUS_BY_CODE])
_CODE = {s: i for i, s in enumerate(STATUS_BY_CODE)}
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
        """For each of ``keys``: its status's position in ``STATUS_BY_CODE`` (-1: unknown to
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

    def keys_with(self, status: Status) -> list[str]:
        """The keys whose latest status is ``status`` (vectorised over the folded log)."""
        keys: list[str] = []
        if self._folded is not None:
            at = np.flatnonzero(self._folded.status == _CODE[status])
            keys = [k for k in self._keys.take(pa.array(at)).to_pylist() if k not in self._changed]
        return keys + [k for k, state in self._changed.items() if state.status is status]

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
class EventLog:
    """Pass 1: of every event, in file then row order, the item key, status code and time."""

    keys: pa.ChunkedArray
    status: np.ndarray  # int8 codes
    at: np.ndarray  # int64 microseconds

    @classmethod
    def read(cls, file: pq.ParquetFile) -> EventLog:
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
    def concat(cls, logs: Sequence[EventLog]) -> EventLog:
        return cls._of(
            [c for log in logs for c in log.keys.chunks],
            [log.status for log in logs],
            [log.at for log in logs],
        )

    @staticmethod
    def _of(keys: list[pa.Array], status: list[np.ndarray], at: list[np.ndarray]) -> EventLog:
        return EventLog(
            pa.chunked_array(keys, pa.string()),
            np.concatenate(status) if status else np.empty(0, np.int8),
            np.concatenate(at) if at else np.empty(0, np.int64),
        )


@dataclass(frozen=True, slots=True)
class Details:
    """Pass 2: the non-null transcript ids and upload URLs of the rows kept, with their rows."""

    tid_rows: np.ndarray
    tid: pa.ChunkedArray
    url_rows: np.ndarray
    url: pa.ChunkedArray

    @classmethod
    def read(
        cls, file: pq.ParquetFile, offset: int, keep: Callable[[np.ndarray], np.ndarray]
    ) -> Details:
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
    def concat(cls, parts: Sequence[Details]) -> Details:
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
    ) -> Details:
        def rows(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, np.int64)

        return Details(
            rows(tid_rows),
            pa.chunked_array(tid, pa.string()),
            rows(url_rows),
            pa.chunked_array(url, pa.string()),
        )


class _Folded:
    """The per-key result of :func:`fold`, and the order it was folded in (for pass 2)."""

    def __init__(
        self, log: EventLog, read_details: Callable[[Callable[[np.ndarray], np.ndarray]], Details]
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
        # The open items' details now (a run resumes them, or finishes their deletion); the
        # settled ones' if ever asked.
        self._detailed = (self.status != _CODE[Status.completed]) & (
            self.status != _CODE[Status.deleted]
        )
        self._tid, self._url = self._details(self._detailed)

    def state(self, i: int) -> ItemState:
        if not self._detailed[i]:
            self._detailed = np.ones(len(self.keys), dtype=bool)
            self._tid, self._url = self._details(self._detailed)
        return ItemState(
            STATUS_BY_CODE[self.status[i]],
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


def fold(
    log: EventLog, read_details: Callable[[Callable[[np.ndarray], np.ndarray]], Details]
) -> States:
    """The state of every item key after applying the log's events in log order with ``_apply``.

    Log order is by ``at``, ties in file name then row order (as ``Ledger.read_events``).
    Vectorised, without sorting or copying the string columns, so that hundreds of thousands
    of events fold in about a second and a few dozen MB: per key, the last event gives
    ``status`` and ``at``; the last ``submitting`` event ``submitting_at``; the last non-null
    ``audio_url``; the last non-null ``transcript_id`` at or after the last ``submitting`` event
    (which resets it); ``ever_completed`` whether any event is ``completed``.
    """
    if len(log.status) == 0:
        return States()
    return States(_Folded(log, read_details))
