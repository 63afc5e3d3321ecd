"""The submit stage, and never paying twice for one item.

``submitting`` is durable in the ledger before a create goes out; the transcript id, once
known, is the receipt for a paid job (``submitted``). A create that failed in a way that may
have made the job is followed by a look-up of the job by its audio_url in the list endpoint,
and so is every ``submitting`` an earlier run left without an outcome (:func:`resolve_unknown`,
before this run uploads anything).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence

from voxlake.crashpoints import crashpoint
from voxlake.errors import AuthenticationError, ForbiddenError, VoxlakeError
from voxlake.lake.ledger import Event, Status, comparable_url
from voxlake.manifest import SourceKind
from voxlake.models import TranscriptParams
from voxlake.redact import redact_url
from voxlake.run.failures import SubmitOutcomeUnknownError, fail, outcome_unknown
from voxlake.run.state import ItemRecord, RunState, each

logger = logging.getLogger(__name__)

#: Clock skew allowed between this machine and AssemblyAI when a job is looked up by the time
#: it was created.
_LOOKUP_SKEW = dt.timedelta(minutes=10)


async def check_key(state: RunState) -> None:
    """One request that a refused API key fails, before any upload.

    Raises :class:`~voxlake.errors.AuthenticationError` (or ``ForbiddenError``) with advice
    said once, for where the key comes from in a run.
    """
    try:
        await state.client.list_transcripts(limit=1)
    except (AuthenticationError, ForbiddenError) as exc:
        raise type(exc)(
            exc.status_code,
            exc.api_message,
            method=exc.method,
            path=exc.path,
            hint=f"AssemblyAI at {redact_url(state.client.settings.base_url)} refused the API "
            "key: check ASSEMBLYAI_API_KEY (or the credentials block) and that the key "
            "belongs to that endpoint's region. Nothing was uploaded or submitted",
        ) from None


async def resolve_unknown(state: RunState) -> None:
    """Find the jobs of items whose create outcome an earlier run never learned.

    Each such item has a ``submitting`` event with its audio_url. A job in the list endpoint
    with that audio_url, created after that event, is adopted (recorded as ``submitted``);
    an item with no such job was never submitted, and is uploaded and submitted afresh.
    """
    unknown = [r for r in state.records.values() if r.unknown]
    if not unknown:
        return
    found = await _find_jobs(state, unknown)
    events = []
    for rec in unknown:
        rec.unknown = False
        tid = found.get(rec.item.media_id)
        if tid is not None:
            rec.transcript_id = tid
            events.append(Event(rec.item, Status.submitted, transcript_id=tid))
            logger.info("%s: adopted job %s from an interrupted run", rec.item.media_id, tid)
            # Planned as an upload and a submit that will now never be sent.
            state.client.reserve_requests(-(1 if rec.item.kind is SourceKind.http else 2))
        else:
            # Never created: an upload URL may have expired since, so upload again.
            rec.audio_url = rec.item.source if rec.item.kind is SourceKind.http else None
    await asyncio.to_thread(state.ledger.append, events)


async def submit(state: RunState, media_ids: Sequence[str]) -> list[str]:
    """Submit, with ``submitting`` durable in the ledger before each request goes out."""
    todo = [m for m in media_ids if state.pending(m) and state.records[m].transcript_id is None]
    if todo and not state.stopped():
        state.ledger.check_lease()
        now = dt.datetime.now(dt.UTC)
        intents = []
        for m in todo:
            rec = state.records[m]
            rec.submitting_at = now
            intents.append(Event(rec.item, Status.submitting, audio_url=rec.audio_url, at=now))
        await asyncio.to_thread(state.ledger.append, intents)
        await each(todo, lambda media_id: _submit_one(state, media_id))
        receipts = [
            Event(state.records[m].item, Status.submitted, transcript_id=tid)
            for m in todo
            if (tid := state.records[m].transcript_id)
        ]
        await asyncio.to_thread(state.ledger.append, receipts)
    state.progress.advance("submit", len(todo))
    return [m for m in media_ids if state.pending(m) and state.records[m].transcript_id]


async def _submit_one(state: RunState, media_id: str) -> None:
    rec = state.records[media_id]
    # submit() only passes items that have one: uploaded, or an http(s) source.
    assert rec.audio_url is not None
    params = rec.item.options.request(rec.audio_url)
    if state.webhook is not None:
        # The run's, not the item's: not an option, so not in its options hash either.
        params = params.model_copy(update=state.webhook.params())
    try:
        async with state.requests:
            if state.stopped():
                return
            transcript_id = await _submit_without_paying_twice(state, rec, params)
    except VoxlakeError as exc:
        fail(state, media_id, "submit", exc)
        return
    crashpoint("after_submit")
    # The id is the receipt for a paid job: from here on, never submit this item again.
    rec.transcript_id = transcript_id
    rec.submitted_at = dt.datetime.now(dt.UTC)


async def _submit_without_paying_twice(
    state: RunState, rec: ItemRecord, params: TranscriptParams
) -> str:
    """Submit; after any failure that may have created the job, look it up before retrying.

    The client retries a create only when no job can exist (a 429, a connection never
    made). Any other failure (a reset or read error after sending, 500/502/503/504) is an
    unknown outcome, however many attempts came before: the job is looked up by its
    audio_url in the list endpoint and adopted if it exists; only when it certainly does
    not is the create sent again.
    """
    for attempt in range(1, state.settings.submit_rounds + 1):
        try:
            return (await state.client.create_transcript(params)).id
        except VoxlakeError as exc:
            if not outcome_unknown(exc):
                raise
            unknown = exc
        found = await _find_jobs(state, [rec])
        if rec.item.media_id in found:
            tid = found[rec.item.media_id]
            logger.info("%s: adopted job %s after %s", rec.item.media_id, tid, unknown)
            return tid
        logger.info(
            "%s: no job was created by the failed submit (%s); submitting again",
            rec.item.media_id,
            unknown,
        )
        await asyncio.sleep(min(30.0, 0.5 * 2**attempt))  # backoff before the next create
    raise SubmitOutcomeUnknownError(
        f"the submit of {rec.item.media_id} failed {state.settings.submit_rounds} times "
        f"({unknown}) and its job could not be confirmed; rerun: the next run looks the "
        "job up by its upload URL before submitting anything"
    )


async def _find_jobs(state: RunState, records: Sequence[ItemRecord]) -> dict[str, str]:
    """``media_id -> transcript id`` of the jobs created for ``records``' audio_urls.

    Pages newest first, stopping at jobs created before the earliest ``submitting`` event
    (less a clock-skew margin): a few list pages, not the account's history.
    """
    by_url = {comparable_url(r.audio_url): r for r in records if r.audio_url}
    oldest = min(
        (r.submitting_at for r in records if r.submitting_at),
        default=dt.datetime.now(dt.UTC),
    )
    found: dict[str, str] = {}
    floor = oldest - _LOOKUP_SKEW
    async for page in state.client.iter_transcript_pages(limit=200):
        created: dt.datetime | None = None
        for listed in page.transcripts:
            created = _listed_at(listed.created)
            rec = by_url.get(comparable_url(listed.audio_url))
            if rec is None or rec.item.media_id in found:
                continue
            since = (rec.submitting_at or oldest) - _LOOKUP_SKEW
            if created is None or created >= since:
                found[rec.item.media_id] = listed.id
        if len(found) == len(by_url) or (created is not None and created < floor):
            break
    return found


def _listed_at(value: str | None) -> dt.datetime | None:
    # AssemblyAI's list timestamps carry no zone and are UTC.
    try:
        parsed = dt.datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed
