"""Re-collecting without paying: completed transcripts fetched again by id, their rows rewritten.

Every ``completed`` ledger event records the tables (and the version of each) its item's rows
were written with (``tables``, :func:`voxlake.lake.tables.tables_record`). A table added to
voxlake later, or a version bump, makes the items whose record lacks it *stale*; so does an
optional table (sentences, paragraphs) asked for (``recollect --sentences``) that the record
lacks. This module fetches their transcripts again (``GET /v2/transcript/{id}`` and the
optional tables' GETs, :func:`voxlake.run.extras.fetch_tables`: no upload, no submission,
nothing billed) and writes all of their rows again, then records ``completed`` with the
current versions. All of them, not only the stale tables', and the optional tables the item's
record names are fetched again too: the current views take every table of an item from the
flow run of its latest ``transcripts`` row, so one complete, consistent copy shows
(docs/ledger.md, "Re-collecting").

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
import json
import threading
import uuid
from collections.abc import Collection
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
from voxlake.lake.ledger import Event, Ledger, Status
from voxlake.lake.ledger.events import RECORDED_COLUMNS, RecordedItem
from voxlake.lake.tables import OPTIONAL, optional_tables_of, stale_tables, tables_record
from voxlake.lake.views import check_output_root
from voxlake.lake.writer import TableSink
from voxlake.models import Transcript, TranscriptStatus
from voxlake.run import extras
from voxlake.storage import S3Options

#: Items fetched, written and committed together: a crash loses at most this many GETs.
COMMIT_ITEMS = 100
#: Transcripts fetched at once.
CONCURRENCY = 8
#: What ``DELETE /v2/transcript/{id}`` leaves as the transcript's audio_url (API_NOTES.md).
DELETED_AUDIO_URL = "http://deleted_by_user"

_COLUMNS = [*RECORDED_COLUMNS, "tables"]


@dataclass(frozen=True, slots=True)
class Due:
    """A completed item whose rows are stale: what its transcripts row needs, from the ledger."""

    item: RecordedItem
    transcript_id: str
    stale: tuple[str, ...]
    optional: tuple[str, ...]  # the optional tables to fetch: asked for, or in its record
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


def find_due(events: pa.Table, wanted: Collection[str] = ()) -> tuple[list[Due], int]:
    """The items whose latest event is ``completed`` with a record missing a current table or
    version, or an optional table ``wanted``; and how many items are recorded ``deleted``.
    ``events`` in log order."""
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
        record = json.loads(event["tables"]) if isinstance(event["tables"], str) else None
        stale = stale_tables(record, wanted)
        if not stale:
            continue
        # An optional table it had is fetched again, whatever its version: its rows must come
        # from the same flow run as the new transcripts row to stay current (views.sql).
        optional = tuple(n for n in OPTIONAL if n in wanted or (record and n in record))
        item = RecordedItem.of_event(event)
        due.append(
            Due(
                item,
                str(event["transcript_id"]),
                tuple(stale),
                optional,
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
    tables: Collection[str] = (),
) -> RecollectSummary:
    """Fetch the stale items' transcripts again and write their rows (module docstring);
    ``tables``: the optional tables to fill (:data:`voxlake.lake.tables.OPTIONAL`).

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
        due, summary.deleted_before = find_due(events, tables)
        summary.due = len(due)
        for d in due:
            for name in d.stale:
                summary.stale_by_table[name] = summary.stale_by_table.get(name, 0) + 1
        if dry_run or not due:
            return summary
        assert client is not None, "a recollect that fetches needs a client"
        sink = TableSink(ledger.output, flow_run_id=run_id, run_date=dt.datetime.now(dt.UTC).date())
        batch = _Batch(ledger, sink, summary)
        requests = asyncio.Semaphore(CONCURRENCY)

        async def one(due: Due) -> VoxlakeError | None:
            # Fetched, then into rows at once (worker thread) under one slot: a long
            # transcript's model is ~1 KB a word, so at most CONCURRENCY of them are in memory,
            # whatever commit_items is.
            async with requests:
                fetched = await _fetch(client, due)
                if isinstance(fetched, _Fatal):
                    return fetched.error
                await asyncio.to_thread(batch.add, due, fetched)
            return None

        try:
            for start in range(0, len(due), commit_items):
                chunk = due[start : start + commit_items]
                fatal = await asyncio.gather(*(one(d) for d in chunk))
                await asyncio.to_thread(batch.commit)
                error = next((e for e in fatal if e is not None), None)
                if error is not None:
                    raise error
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


_Fetched = Transcript | _Gone | _Failed | _Fatal


async def _fetch(client: AssemblyAIClient, due: Due) -> _Fetched:
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
    try:
        await extras.fetch_tables(client, transcript, due.optional)  # in the caller's slot
    except (AuthenticationError, ForbiddenError) as exc:
        return _Fatal(exc)
    except VoxlakeError as exc:  # its transcript was there a moment ago: next time
        return _Failed(f"its {', '.join(due.optional)} cannot be fetched: {exc}")
    return transcript


class _Batch:
    """The rows and ledger events of the items fetched since the last commit."""

    def __init__(self, ledger: Ledger, sink: TableSink, summary: RecollectSummary) -> None:
        self.ledger, self.sink, self.summary = ledger, sink, summary
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def add(self, due: Due, fetched: Transcript | _Gone | _Failed) -> None:
        """One item's outcome: its rows into the sink (published at the latest by
        :meth:`commit`), and the event that :meth:`commit` appends after them."""
        item, summary = due.item, self.summary
        with self.lock:
            if isinstance(fetched, _Failed):
                summary.failed.append((item.media_id, fetched.reason))
                return
            if isinstance(fetched, _Gone):
                summary.gone.append(due.transcript_id)
                self.events.append(
                    Event(
                        item,
                        Status.deleted,
                        transcript_id=due.transcript_id,
                        stage="recollect",
                        error=fetched.reason,
                    )
                )
                return
            fields = {
                "source": item.source,
                "options_hash": item.options_hash,
                "source_size": item.size,
                "source_fingerprint": item.fingerprint,
                "submitted_at": due.submitted_at,
                "completed_at": due.completed_at,
            }
            (error,) = self.sink.add_many([(item.media_id, fetched, fields)])
            if error is not None:
                summary.failed.append((item.media_id, f"its rows cannot be built: {error}"))
                return
            duration = None if fetched.audio_duration is None else float(fetched.audio_duration)
            self.events.append(
                Event(
                    item,
                    Status.completed,
                    transcript_id=due.transcript_id,
                    audio_duration_s=duration,
                    tables=tables_record(optional_tables_of(fetched)),
                )
            )
            summary.written += 1

    def commit(self) -> None:
        """Publish the rows, then tell the ledger: it never says "current" for rows that are
        not durable (worker thread)."""
        with self.lock:
            self.sink.flush()
            events, self.events = self.events, []
        crashpoint("write")
        self.ledger.append(events)
