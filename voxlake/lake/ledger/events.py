"""The ledger's events: their schema, an item's key, what one status change records.

An event file is ``<root>/_ledger/events/<run_id>-<token>-<seq>.parquet`` with
:data:`EVENT_SCHEMA`; no secrets or presigned query strings are stored (URLs pass
:func:`voxlake.redact.redact_url`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from voxlake.redact import redact_url

if TYPE_CHECKING:
    from voxlake.manifest import MediaItem

LEDGER_DIR = "_ledger"
EVENTS_DIR = f"{LEDGER_DIR}/events"


class Status(StrEnum):
    submitting = "submitting"
    submitted = "submitted"
    completed = "completed"
    job_failed = "job_failed"
    failed = "failed"
    deferred = "deferred"
    # After the item's outcome: its transcript is to be deleted at AssemblyAI (written in the
    # same append as `completed`), then is (docs/ledger.md, "Deleting transcripts").
    deleting = "deleting"
    deleted = "deleted"


#: Statuses that say what became of an item's transcript at AssemblyAI, not of the item:
#: planning reads through them to the outcome before (voxlake.lake.ledger.planning).
DELETION = (Status.deleting, Status.deleted)


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
        _f(
            "run_id",
            pa.string(),
            "Run that recorded the event: its Prefect flow run id, or the UUID a run outside "
            "Prefect gives itself (`voxlake run` without a Prefect API, `voxlake recollect`)",
            nullable=False,
        ),
        _f("at", _UTC_US, "When the event was recorded (UTC)", nullable=False),
        _f(
            "tables",
            pa.string(),
            "Of a completed item: the tables its rows were written with and the version of "
            'each, as JSON ({"transcripts": 1, "words": 1, ...}); null before versions were '
            "recorded",
        ),
    ],
    metadata={"description": "One row per status change of an item (docs/ledger.md)."},
)


def item_key(source: str, fingerprint: str | None, options_hash: str) -> str:
    """The ledger identity of an item: its source, the identity of its bytes, its options."""
    text = "\0".join((redact_url(source), fingerprint or "", options_hash))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def key_of(item: MediaItem | RecordedItem) -> str:
    if isinstance(item, RecordedItem):
        return item.key
    return item_key(item.source, item.fingerprint, item.options_hash)


#: The event columns a :class:`RecordedItem` and its status are read from, with the transcript.
RECORDED_COLUMNS = [
    "item_key",
    "media_id",
    "source",
    "source_fingerprint",
    "source_size",
    "options_hash",
    "status",
    "transcript_id",
]


@dataclass(frozen=True, slots=True)
class RecordedItem:
    """An item as the ledger recorded it: what an event about it needs when no manifest names
    it (``voxlake purge``, or a run finishing an earlier run's deletions)."""

    key: str
    media_id: str
    source: str  # as recorded: already without a signed query
    fingerprint: str | None
    size: int | None
    options_hash: str

    @classmethod
    def of_event(cls, row: Mapping[str, Any]) -> RecordedItem:
        """The item of one ledger event, read with (at least) :data:`RECORDED_COLUMNS`."""
        size, fingerprint = row["source_size"], row["source_fingerprint"]
        return cls(
            key=str(row["item_key"]),
            media_id=str(row["media_id"]),
            source=str(row["source"]),
            fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            size=size if isinstance(size, int) else None,
            options_hash=str(row["options_hash"]),
        )


@dataclass(frozen=True, slots=True)
class Event:
    item: MediaItem | RecordedItem
    status: Status
    audio_url: str | None = None
    transcript_id: str | None = None
    stage: str | None = None
    error: str | None = None
    audio_duration_s: float | None = None
    tables: str | None = None  # voxlake.lake.tables.tables_record() of the rows written
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))


def events_table(events: Sequence[Event], run_id: str) -> pa.Table:
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
        rows["tables"].append(e.tables)
    return pa.Table.from_pydict(rows, schema=EVENT_SCHEMA)


def _no_query(url: str | None) -> str | None:
    """An audio URL as the ledger keeps it: never a query string (presigned signatures)."""
    if url is None:
        return None
    return redact_url(url).split("?", 1)[0].split("#", 1)[0]


def comparable_url(url: str | None) -> str | None:
    """The form in which a listed job's ``audio_url`` is compared with the ledger's."""
    return _no_query(url)


def safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:64]
