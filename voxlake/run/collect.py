"""The collect stage: fetch each final transcript once (and what the run asks for besides it,
:mod:`voxlake.run.extras`), normalise it into rows, load them.

Fetches run concurrently (``max_requests`` at a time) and their rows are written in groups:
one worker-thread hop and one batch per table per group, because for short transcripts the cost
of a write, not of the words, was most of this stage's CPU. A group is written once it holds
``_WRITE_GROUP_WORDS`` words, so a chunk of long transcripts is never all in memory at once.
Rows are committed (published, then recorded in the ledger) every ``commit_interval_s`` or
``commit_items`` (:mod:`voxlake.run.load`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from voxlake.errors import VoxlakeError
from voxlake.models import Transcript, TranscriptStatus
from voxlake.run import delete, extras, load, normalise
from voxlake.run.failures import fail
from voxlake.run.notified import NotifiedWaiter
from voxlake.run.state import ItemRecord, RunState, each

# collect() writes fetched transcripts once this many words are waiting: ~1 KB a word as
# parsed models, so ~100 MB, and rows enough that a write's fixed cost is noise.
_WRITE_GROUP_WORDS = 100_000


async def collect(state: RunState, media_ids: Sequence[str]) -> int:
    """Fetch each final transcript once and write its rows. Returns the items written."""
    todo = [m for m in media_ids if state.pending(m) and state.records[m].transcript_id]
    group: list[tuple[ItemRecord, Transcript]] = []
    words = 0

    async def fetch(media_id: str) -> None:
        nonlocal group, words
        transcript = await _fetch_one(state, media_id)
        if transcript is None:
            return
        group.append((state.records[media_id], transcript))
        words += len(transcript.words or ())
        if words >= _WRITE_GROUP_WORDS:
            full, group, words = group, [], 0
            await _write(state, full)

    await each(todo, fetch)
    await _write(state, group)
    await load.commit_if_due(state)
    if isinstance(state.poller, NotifiedWaiter):
        # Collected (or failed for good): their notifications are done with. Acknowledged
        # before the commit is no loss: an uncommitted job is resumed by the next run, which
        # looks for it with the safety-net poll when no notification is pending.
        await state.poller.acknowledge(
            tid for m in todo if not state.pending(m) and (tid := state.records[m].transcript_id)
        )
    await delete.due(state)
    state.progress.advance("collect", len(todo))
    return len(todo)


async def _fetch_one(state: RunState, media_id: str) -> Transcript | None:
    """The final transcript of an item, or None when its failure has been recorded."""
    rec = state.records[media_id]
    async with state.requests:
        try:
            transcript = await state.client.get_transcript(rec.transcript_id or "")
        except VoxlakeError as exc:
            fail(state, media_id, "fetch", exc)
            return None
    if transcript.status not in (TranscriptStatus.completed, TranscriptStatus.error):
        # The list endpoint said final; a lagging replica may disagree. Treat as a poll miss.
        fail(
            state,
            media_id,
            "fetch",
            VoxlakeError(
                f"transcript {transcript.id} reported {transcript.status.value} after the "
                "list endpoint reported it final; rerun to collect it"
            ),
        )
        return None
    rec.completed_at = dt.datetime.now(dt.UTC)
    if not await extras.fetch_extras(state, media_id, transcript):
        return None
    return transcript


async def _write(state: RunState, group: Sequence[tuple[ItemRecord, Transcript]]) -> None:
    """Write the rows of fetched transcripts in one worker-thread hop, then record each."""
    if not group:
        return
    errors = await load.add_transcripts(state, normalise.sink_entries(group))
    for (rec, transcript), error in zip(group, errors, strict=True):
        if error is not None:
            # Its rows could not be built (a malformed transcript), so none were written:
            # it gets an error row like any failed item, and its neighbours' rows stand.
            fail(state, rec.item.media_id, "write", error)
            continue
        outcome = normalise.outcome(rec, transcript)
        load.uncommitted(state, outcome)
        delete.request(state, rec, outcome)
