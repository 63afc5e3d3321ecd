"""Re-collecting without paying: completed transcripts fetched again by id, their rows rewritten.

Every ``completed`` ledger event records the tables (and the version of each) its item's rows
were written with (``tables``, :func:`voxlake.lake.tables.tables_record`). A table added to
voxlake later, or a version bump, makes the items whose record lacks it *stale*: this module
fetches their transcripts again (``GET /v2/transcript/{id}`` only: no upload, no submission,
nothing billed) and writes all of their rows again, then records ``completed`` with the
current versions. All of them, not only the stale tables': the current views take every
table of an item from the flow run of its latest ``transcripts`` row, so one consistent copy
shows (docs/ledger.md, "Re-collecting").

Like a run: under the output root's lease, rows published before the ledger is told, in
commits of :data:`COMMIT_ITEMS`; a crash in between makes the next recollect write those items
again, and the current views still show each once. A transcript AssemblyAI no longer has
(404, or the shell ``DELETE`` leaves: ``audio_url`` ``http://deleted_by_user``) is recorded
``deleted`` and never asked for again; other failures (network, 5xx after the client's
retries) are reported and retried by the next recollect.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from voxlake.client import AssemblyAIClient
from voxlake.crashpoints import crashpoint
from voxlake.errors import (
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    VoxlakeError,
)
from voxlake.lake.ledger import Event, Ledger, LedgerItem, Status
from voxlake.lake.normalize import SinkEntry
from voxlake.lake.tables import stale_tables, tables_record
from voxlake.lake.views import check_output_root
from voxlake.lake.writer import TableSink
from voxlake.models import Transcript, TranscriptStatus
from voxlake.storage import S3Options

#: Items fetched, written and committed together: a crash loses at most this many GETs.
COMMIT_ITEMS = 100
#: Transcripts fetched at once.
CONCURRENCY = 8
#: What ``DELETE /v2/transcript/{id}`` leaves as the transcript's audio_url (API_NOTES.md).
DELETED_AUDIO_URL = "http://deleted_by_user"

_COLUMNS = [
    "item_key",
    "media_id",
    "source",
    "source_fingerprint",
    "source_size",
    "options_hash",
    "status",
    "transcript_id",
    "tables",
]


@dataclass(frozen=True, slots=True)
class Due:
    """A completed item whose rows are stale: what its transcripts row needs, from the ledger."""

    item: LedgerItem
    transcript_id: str
    stale: tuple[str, ...]
    submitted_at: dt.datetime | None
    completed_at: dt.datetime | None


@dataclass
class RecollectSummary:
    due: int = 0  # completed items with stale rows
    stale_by_table: dict[str, int] = field(default_factory=dict)
    written: int = 0  # items whose rows were written again
    gone: list[str] = field(default_factory=list)  # transcript ids AssemblyAI no longer has
    failed: list[tuple[str, str]] = field(default_factory=list)  # (media_id, why): next time
    deleted_before: int = 0  # items recorded deleted by an earlier command: never fetched
    requests: int = 0  # AssemblyAI requests sent, retries included
    dry_run: bool = False


def find_due(events: pa.Table) -> tuple[list[Due], int]:
    """The items whose latest event is ``completed`` with a record missing a current table or
    version; and how many items are recorded ``deleted``. ``events`` in log order."""
    latest: dict[str, dict[str, object]] = {}
    submitted: dict[str, dt.datetime] = {}
    first_completed: dict[str, dt.datetime] = {}
    columns = {name: events.column(name).to_pylist() for name in [*_COLUMNS, "at"]}
    for row in zip(*columns.values(), strict=True):
        event = dict(zip(columns, row, strict=True))
        key = str(event["item_key"])
        latest[key] = event
        at = event["at"]
        assert isinstance(at, dt.datetime)
        if event["status"] == Status.submitted:
            submitted[key] = at
        elif event["status"] == Status.completed:
            first_completed.setdefault(key, at)
    due, deleted = [], 0
    for key, event in latest.items():
        if event["status"] == Status.deleted:
            deleted += 1
        if event["status"] != Status.completed or not event["transcript_id"]:
            continue
        record = event["tables"]
        stale = stale_tables(record if isinstance(record, str) else None)
        if not stale:
            continue
        size = event["source_size"]
        fingerprint = event["source_fingerprint"]
        item = LedgerItem(
            media_id=str(event["media_id"]),
            source=str(event["source"]),
            fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            size=size if isinstance(size, int) else None,
            options_hash=str(event["options_hash"]),
        )
        due.append(
            Due(
                item,
                str(event["transcript_id"]),
                tuple(stale),
                submitted.get(key),
                first_completed.get(key),
            )
        )
    due.sort(key=lambda d: d.item.media_id)
    return due, deleted


def _gone_reason(transcript: Transcript) -> str | None:
    """Why a fetched transcript has no rows to give any more (deleted), or None."""
    if transcript.audio_url == DELETED_AUDIO_URL:
        return "deleted at AssemblyAI (DELETE /v2/transcript)"
    return None


async def recollect(
    output: str,
    *,
    client: AssemblyAIClient | None,
    s3: S3Options | None = None,
    dry_run: bool = False,
    run_id: str | None = None,
    commit_items: int = COMMIT_ITEMS,
) -> RecollectSummary:
    """Fetch the stale items' transcripts again and write their rows (module docstring).

    ``dry_run`` only reads the ledger (no lease, no request; ``client`` may be None). Raises
    :class:`~voxlake.errors.VoxlakeError` for what stops the whole command: not an output
    root, the lease held by a run, a refused API key (after committing what was done).
    """
    check_output_root(output, s3=s3)
    run_id = run_id or str(uuid.uuid4())
    summary = RecollectSummary(dry_run=dry_run)
    ledger = await asyncio.to_thread(Ledger.open, output, run_id=run_id, s3=s3, read_only=dry_run)
    try:
        events = await asyncio.to_thread(ledger.read_events, _COLUMNS)
        due, summary.deleted_before = find_due(events)
        summary.due = len(due)
        for d in due:
            for name in d.stale:
                summary.stale_by_table[name] = summary.stale_by_table.get(name, 0) + 1
        if dry_run or not due:
            return summary
        assert client is not None, "a recollect that fetches needs a client"
        sink = TableSink(ledger.output, flow_run_id=run_id, run_date=dt.datetime.now(dt.UTC).date())
        requests = asyncio.Semaphore(CONCURRENCY)
        try:
            for start in range(0, len(due), commit_items):
                chunk = due[start : start + commit_items]
                fetched = await asyncio.gather(*(_fetch(client, requests, d) for d in chunk))
                await asyncio.to_thread(_commit, ledger, sink, chunk, fetched, summary)
                fatal = next((f for f in fetched if isinstance(f, _Fatal)), None)
                if fatal is not None:
                    raise fatal.error
            await asyncio.to_thread(sink.close)
        finally:
            summary.requests = client.requests_sent
    finally:
        await asyncio.to_thread(ledger.close)
    return summary


@dataclass(frozen=True, slots=True)
class _Gone:
    reason: str


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str


@dataclass(frozen=True, slots=True)
class _Fatal:
    error: VoxlakeError


_Fetched = Transcript | _Gone | _Failed | _Fatal | None


async def _fetch(client: AssemblyAIClient, requests: asyncio.Semaphore, due: Due) -> _Fetched:
    async with requests:
        try:
            transcript = await client.get_transcript(due.transcript_id)
        except (AuthenticationError, ForbiddenError) as exc:
            return _Fatal(exc)  # the key, not the item: every other GET would fail the same
        except NotFoundError:
            return _Gone("not found at AssemblyAI (404): deleted, or another account's")
        except BadRequestError as exc:
            # AssemblyAI's cookbook: 400 "Transcript lookup error, transcript id not found".
            if "not found" in exc.api_message.lower():
                return _Gone(f"not found at AssemblyAI (400: {exc.api_message})")
            return _Failed(str(exc))
        except VoxlakeError as exc:  # network, 5xx: after the client's retries; next time
            return _Failed(str(exc))
    gone = _gone_reason(transcript)
    if gone is not None:
        return _Gone(gone)
    if transcript.status is not TranscriptStatus.completed:
        return _Failed(f"transcript {transcript.id} is {transcript.status.value}, not completed")
    return transcript


def _commit(
    ledger: Ledger,
    sink: TableSink,
    chunk: Sequence[Due],
    fetched: Sequence[_Fetched],
    summary: RecollectSummary,
) -> None:
    """Write the chunk's rows, publish them, then tell the ledger (worker thread)."""
    written = [(d, t) for d, t in zip(chunk, fetched, strict=True) if isinstance(t, Transcript)]
    entries: list[SinkEntry] = [
        (
            d.item.media_id,
            t,
            {
                "source": d.item.source,
                "options_hash": d.item.options_hash,
                "source_size": d.item.size,
                "source_fingerprint": d.item.fingerprint,
                "submitted_at": d.submitted_at,
                "completed_at": d.completed_at,
            },
        )
        for d, t in written
    ]
    errors = sink.add_many(entries)
    events = []
    for (d, t), error in zip(written, errors, strict=True):
        if error is not None:
            summary.failed.append((d.item.media_id, f"its rows cannot be built: {error}"))
            continue
        duration = float(t.audio_duration) if t.audio_duration is not None else None
        events.append(
            Event(
                d.item,
                Status.completed,
                transcript_id=d.transcript_id,
                audio_duration_s=duration,
                tables=tables_record(),
            )
        )
        summary.written += 1
    for d, outcome in zip(chunk, fetched, strict=True):
        if isinstance(outcome, _Gone):
            events.append(
                Event(
                    d.item,
                    Status.deleted,
                    transcript_id=d.transcript_id,
                    stage="recollect",
                    error=outcome.reason,
                )
            )
            summary.gone.append(d.transcript_id)
        elif isinstance(outcome, _Failed):
            summary.failed.append((d.item.media_id, outcome.reason))
    sink.flush()  # the rows first: the ledger never says "current" for rows not durable
    crashpoint("write")
    ledger.append(events)
