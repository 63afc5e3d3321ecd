"""Load: rows into the table sink, then committed: the Parquet files published, then the ledger
told, in that order (docs/ledger.md).

In this order, a crash in between leaves rows the ledger does not know about: the next run
fetches those transcripts again (free) and writes them again, and the current view shows each
item once. The other order could mark an item done with no rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence

from voxlake.crashpoints import crashpoint
from voxlake.lake.ledger import Event, Status
from voxlake.lake.normalize import SinkEntry
from voxlake.lake.writer import TableSink, WrittenFile
from voxlake.run.normalise import row_fields
from voxlake.run.state import ItemRecord, RunState


def open_sink(state: RunState, run_date: dt.date) -> None:
    state.opened_sink = TableSink(
        state.root,
        flow_run_id=state.flow_run_id,
        run_date=run_date,
        max_buffer_rows=state.settings.max_buffer_rows,
    )


async def add_transcripts(state: RunState, entries: Sequence[SinkEntry]) -> list[Exception | None]:
    """Build and buffer the rows of fetched transcripts; per entry, why its rows could not be
    built (None when they were).

    In a worker thread: building and writing batches is CPU and disk bound, and must not stall
    the event loop that drives hundreds of requests.
    """

    def add_locked() -> list[Exception | None]:
        with state.sink_lock:
            return state.sink.add_many(entries)

    return await asyncio.to_thread(add_locked)


def add_error_row(state: RunState, rec: ItemRecord, event: Event | None) -> None:
    """A failed item's row (no transcript), and its ledger event once the row is published."""
    with state.sink_lock:
        state.sink.add(
            rec.item.media_id,
            None,
            error=rec.error,
            transcript_id=rec.transcript_id,
            **row_fields(rec),
        )
        if event is not None:
            state.uncommitted.append(event)


def add_invalid_rows(state: RunState, rows: Sequence[tuple[str, str, str]]) -> None:
    """A row per invalid manifest row: (media_id, source, error)."""
    with state.sink_lock:
        for media_id, source, error in rows:
            state.sink.add(media_id, None, source=source, options_hash="", error=error)


def uncommitted(state: RunState, event: Event) -> None:
    """Tell the ledger ``event`` at the next commit, once the rows before it are published."""
    with state.sink_lock:
        state.uncommitted.append(event)


def commit(state: RunState) -> None:
    """Publish every buffered row, then tell the ledger (worker thread)."""
    with state.sink_lock:
        state.sink.flush()
        events, state.uncommitted = state.uncommitted, []
    crashpoint("write")
    state.ledger.append(events)
    state.last_commit = time.monotonic()
    # Only now, with the rows and the outcome durable, may a transcript be deleted.
    deleting = [e for e in events if e.status is Status.deleting]
    if deleting:
        with state.sink_lock:
            state.to_delete += deleting


async def commit_if_due(state: RunState) -> None:
    """Commit every ``commit_interval_s`` or ``commit_items``: a crash loses little work."""
    if (
        len(state.uncommitted) >= state.settings.commit_items
        or time.monotonic() - state.last_commit >= state.settings.commit_interval_s
    ):
        await asyncio.to_thread(commit, state)


async def close(state: RunState) -> dict[str, list[WrittenFile]]:
    """Commit what is left and close the sink; the files it wrote, by table."""
    await asyncio.to_thread(commit, state)
    with state.sink_lock:
        return await asyncio.to_thread(state.sink.close)
