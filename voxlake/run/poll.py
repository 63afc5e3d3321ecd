"""The poll stage: wait until each submitted job is final.

Every chunk's jobs are waited for by the run's one :class:`~voxlake.polling.SharedPoller`,
which asks the list endpoint for many jobs at once (batched, adaptively paced).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from voxlake.errors import PollTimeoutError
from voxlake.run.failures import fail
from voxlake.run.state import RunState


async def wait(state: RunState, media_ids: Sequence[str]) -> list[str]:
    """Wait until each submitted transcript is final; returns the ids ready to collect."""
    by_tid = {
        tid: m for m in media_ids if state.pending(m) and (tid := state.records[m].transcript_id)
    }
    if not by_tid:
        return []
    # A job this run submitted is rarely done within poll_first_s (AssemblyAI's usual
    # minimum turnaround); one adopted from an earlier run (resumed) may be done already.
    waiting = state.poller.wait(
        {
            tid: state.settings.poll_first_s if state.records[m].submitted_at else 0.0
            for tid, m in by_tid.items()
        }
    )
    try:
        results = await asyncio.wait_for(waiting, timeout=state.settings.poll_timeout_s)
    except TimeoutError:
        state.poller.abandon(by_tid)
        for tid, media_id in by_tid.items():
            rec = state.records[media_id]
            if not rec.done:
                exc = PollTimeoutError(tid, state.settings.poll_timeout_s or 0.0, None)
                fail(state, media_id, "poll", exc)
        return []
    ready = []
    for result in results:
        media_id = by_tid[result.transcript_id]
        if result.error is not None:
            fail(state, media_id, "poll", result.error)
        else:
            ready.append(media_id)
    state.progress.advance("poll", len(by_tid))
    return ready
