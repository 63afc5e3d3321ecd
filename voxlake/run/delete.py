"""The delete stage: with ``--delete-after-collect``, each transcript is deleted at AssemblyAI
(``DELETE /v2/transcript/{id}``) once its rows and its outcome are committed, never before.

The ledger says what is asked and what is done, as it does for submissions (docs/ledger.md):

1. ``deleting`` is appended in the same ledger file as the item's ``completed`` (or
   ``job_failed``) event, so it becomes durable together with the outcome, after the rows
   (:func:`request`, :func:`voxlake.run.load.commit`);
2. after that commit the transcript is deleted (:func:`due`), and ``deleted`` appended.

A crash between 1 and 2 leaves ``deleting``: the next run on the output root finishes those
first (:func:`unfinished`), whatever its own options, and submits nothing for them. A DELETE
that fails after the client's retries stays ``deleting`` (held at AssemblyAI), is reported in
the summary, and is tried again by the next run or ``voxlake purge``. A 404 means there is
nothing left to delete: it counts as deleted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence

from voxlake.client import AssemblyAIClient
from voxlake.crashpoints import crashpoint
from voxlake.errors import NotFoundError, VoxlakeError
from voxlake.lake.ledger import Event, Ledger, Status
from voxlake.run import load
from voxlake.run.failures import stops_the_run
from voxlake.run.state import DeleteFailure, ItemRecord, RunState


def request(state: RunState, rec: ItemRecord, outcome: Event) -> None:
    """With ``--delete-after-collect``: ask for the deletion of the transcript of ``outcome``
    (an item's ``completed`` or ``job_failed`` event, waiting for the next commit), in the
    same ledger append as the outcome itself."""
    if not state.delete_after_collect or outcome.transcript_id is None:
        return
    load.uncommitted(
        state,
        Event(
            rec.item,
            Status.deleting,
            transcript_id=outcome.transcript_id,
            # After the outcome, even within one clock tick (the ledger orders by time).
            at=outcome.at + dt.timedelta(microseconds=1),
        ),
    )


async def due(state: RunState) -> None:
    """Delete the transcripts whose outcome has been committed since the last call."""
    with state.sink_lock:
        todo, state.to_delete = state.to_delete, []
    await delete(state, todo)


async def unfinished(state: RunState) -> None:
    """Finish the deletions an earlier run asked for and did not do (crashed, or failed)."""
    if not state.ledger.states.keys_with(Status.deleting):
        return  # the usual case, known from the folded log without reading more of it
    held = await asyncio.to_thread(state.ledger.held)
    await delete(
        state,
        [Event(h.item, Status.deleting, transcript_id=h.transcript_id) for h in held.requested],
    )


async def delete(state: RunState, asked: Sequence[Event]) -> None:
    """Delete the transcript of each ``deleting`` event; record ``deleted`` for each one gone."""
    if not asked:
        return
    crashpoint("delete")  # the outcomes and `deleting` are durable; nothing deleted yet
    deleted, failures, fatal = await delete_transcripts(
        state.client, state.ledger, asked, requests=state.requests, stopped=state.stopped
    )
    if fatal is not None and state.fatal is None:
        state.fatal = fatal
    state.deleted += deleted
    state.delete_failures += failures


async def delete_transcripts(
    client: AssemblyAIClient,
    ledger: Ledger,
    asked: Sequence[Event],
    *,
    requests: asyncio.Semaphore,
    stopped: Callable[[], bool] = lambda: False,
) -> tuple[int, list[DeleteFailure], VoxlakeError | None]:
    """``DELETE`` the transcript of each event (``requests`` at a time), then append one
    ``deleted`` event per transcript gone. Returns how many, the failures, and the error that
    stopped further requests (a refused key), if any. Each request has had the client's
    retries; this adds none."""
    fatal: VoxlakeError | None = None

    async def one(event: Event) -> VoxlakeError | None:
        nonlocal fatal
        async with requests:
            if fatal is not None or stopped():
                return VoxlakeError("not sent: the run stopped before this request")
            try:
                await client.delete_transcript(event.transcript_id or "")
            except NotFoundError:
                return None  # nothing left to delete (deleted already, or never kept)
            except VoxlakeError as exc:
                if stops_the_run(exc) and fatal is None:
                    fatal = exc
                return exc
        return None

    errors = await asyncio.gather(*(one(e) for e in asked))
    done = [
        Event(e.item, Status.deleted, transcript_id=e.transcript_id)
        for e, error in zip(asked, errors, strict=True)
        if error is None
    ]
    await asyncio.to_thread(ledger.append, done)
    failures = [
        DeleteFailure(e.item.media_id, e.transcript_id or "", str(error))
        for e, error in zip(asked, errors, strict=True)
        if error is not None
    ]
    return len(done), failures, fatal
