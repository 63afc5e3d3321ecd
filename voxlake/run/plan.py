"""Planning: which of the manifest's items this run works on, and in what order.

Every item is planned against the output root's ledger (docs/ledger.md): new, retried, resumed
(in flight in an earlier run), or skipped; then the audio budget defers what does not fit. The
manifest's rows were resolved already (:mod:`voxlake.manifest`: sources classified, sizes and
fingerprints known); its invalid rows become rows of their own (:func:`invalid_rows`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from voxlake.estimate import deferral_reason, media_durations, within_budget
from voxlake.lake.ledger import Event, Status
from voxlake.lake.ledger import plan as ledger_plan
from voxlake.manifest import MediaItem, SourceKind
from voxlake.run.state import ItemRecord, RunState


async def plan(
    state: RunState, *, force: bool, retry_failed: bool, max_audio_hours: float | None
) -> None:
    """Fill ``state.records`` and ``state.counts``; record the deferred items in the ledger."""
    planned = ledger_plan(
        state.manifest.items,
        state.ledger.states,
        force=force,
        retry_failed=retry_failed,
    )
    counts = Counter(p.action for p in planned)
    to_submit = [p.item for p in planned if p.action == "new"]
    deferred: list[MediaItem] = []
    if max_audio_hours is not None:
        durations = await asyncio.to_thread(media_durations, to_submit, state.s3)
        # In manifest order (see within_budget); the chunks then go longest first.
        _, deferred = within_budget(to_submit, durations, max_audio_hours)
        if deferred:
            events = [
                Event(
                    i,
                    Status.deferred,
                    error=deferral_reason(durations[i.media_id], max_audio_hours),
                    audio_duration_s=durations[i.media_id],
                )
                for i in deferred
            ]
            await asyncio.to_thread(state.ledger.append, events)
    deferred_ids = {i.media_id for i in deferred}
    for p in planned:
        if p.action == "new" and p.item.media_id not in deferred_ids:
            origin: Literal["new", "retry", "resume"] = "retry" if p.retry else "new"
            state.records[p.item.media_id] = ItemRecord(p.item, origin=origin)
        elif p.action == "resume" and p.state is not None:
            state.records[p.item.media_id] = ItemRecord(
                p.item,
                origin="resume",
                audio_url=p.state.audio_url,
                transcript_id=p.state.transcript_id,
                unknown=p.state.status is Status.submitting,
                submitting_at=p.state.submitting_at,
            )
    state.skipped_failed = [p.item.media_id for p in planned if p.action == "skip_failed"]
    origins = Counter(r.origin for r in state.records.values())
    state.counts = {
        "new": origins["new"],
        "retried": origins["retry"],
        "resumed": origins["resume"],
        "skipped": counts["skip_done"],
        "skipped_failed": counts["skip_failed"],
        "deferred": len(deferred),
    }
    # Uploads and submits go before reads when a run needs more than a window's requests.
    # (An http(s) source is only submitted; a presigned S3 one is counted as uploaded too.)
    state.client.reserve_requests(
        sum(
            0 if r.transcript_id else 1 if r.item.kind is SourceKind.http else 2
            for r in state.records.values()
        )
    )
    state.progress.plan(len(state.records))


def longest_first(state: RunState) -> list[str]:
    """Local and S3 media by size, largest first (a proxy for duration); others keep order.

    Items resumed from an earlier run go first: their jobs are paid for and may be done.
    """
    ordered = _longest_first(r.item for r in state.records.values())
    return sorted(
        (i.media_id for i in ordered),
        key=lambda m: state.records[m].origin != "resume",  # stable: keeps size order
    )


def _longest_first(items: Iterable[MediaItem]) -> list[MediaItem]:
    # Longest jobs first (size ~ duration): the server's FIFO queue then ends on short jobs, so
    # the last slots free up together (LPT scheduling). Sizes come from resolving the manifest.
    return sorted(items, key=lambda i: i.size or 0, reverse=True)


def invalid_rows(state: RunState) -> list[tuple[str, str, str]]:
    """(media_id, source, error) of each skipped manifest row, with a media_id of its own.

    A row without a usable id, or whose id another row already has (a duplicate), is named
    after its row number so every manifest row stays exactly one ``transcripts`` row.
    """
    taken = {i.media_id for i in state.manifest.items}
    rows = []
    for inv in state.invalid:
        media_id = inv.media_id
        if media_id is None or media_id in taken:
            media_id = f"{inv.media_id or 'manifest'}@row{inv.row}"
        taken.add(media_id)
        rows.append((media_id, inv.source or "", f"manifest row {inv.row}: {inv.reason}"))
    return rows
