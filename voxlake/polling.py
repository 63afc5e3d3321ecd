"""Waiting for transcripts: one at a time (adaptive interval) or many at once (list endpoint).

Single transcript
    :func:`wait_for_completion` places the first poll at the expected processing time (default
    3 s; see :func:`estimate_processing_s`), then backs off x1.5 up to ``max_interval_s``
    (20 s). It uses a monotonic clock. It *returns* the transcript for both ``completed`` and
    ``error``: a failed job is per-file data for the flow (error transcripts are not billed and
    go into the results table). Call :func:`raise_for_status` to turn ``error`` into
    :class:`TranscriptFailedError`. When ``timeout_s`` runs out it raises
    :class:`PollTimeoutError`: the job keeps running server-side and can be resumed by id.

Many transcripts: the trade-off
    AssemblyAI allows 20,000 requests per 5 minutes per account (≈ 66 req/s). Polling 1,000
    in-flight jobs one by one every 3 s is 333 req/s: five times over the limit, before counting
    uploads and submits. The list endpoint returns up to 200 transcripts (with status) per
    request, newest first, so :func:`fetch_statuses` learns N statuses with about ``ceil(N/200)``
    requests per round, and :class:`BatchPoller` fetches each finished transcript exactly once.
    Total per uploaded file ≈ 3 requests (upload, submit, fetch) plus amortised list pages
    (:class:`SharedPoller` paces a small run's rounds so that they add ~1/3 per file).
    Costs and caveats:

    - The list shows the whole *account*: other producers' recent jobs share the pages and cost
      extra pages (``max_pages`` bounds that; ids not found fall back to a direct GET).
    - It covers only the last 90 days; older ids are never found there.
    - A job's status in the list can lag its ``GET /v2/transcript/{id}`` slightly; the final
      GET of a finished job is authoritative.

One loop per run
    :class:`SharedPoller` drives one :class:`BatchPoller` for a whole run: the pipeline's chunks
    register ids and await them, and the loop's request count does not grow with the chunks.
    A just-submitted job is first polled :data:`DEFAULT_FIRST_POLL_S` after it registers, a
    resumed one at once; registering never polls by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from voxlake.crashpoints import crashpoint
from voxlake.errors import NotFoundError, PollTimeoutError, TranscriptFailedError, VoxlakeError
from voxlake.models import Transcript, TranscriptList, TranscriptStatus
from voxlake.settings import DEFAULT_FIRST_POLL_S

log = logging.getLogger("voxlake.polling")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

MIN_INTERVAL_S = 3.0
MAX_INTERVAL_S = 20.0
BACKOFF = 1.5
LIST_PAGE_LIMIT = 200
#: Finished jobs a status round of the tail is paced to find (:class:`SharedPoller`): a small
#: run then costs about ``1 / TAIL_FINDS`` status requests per file on top of its three.
TAIL_FINDS = 3.0


class _TranscriptSource(Protocol):
    """The part of :class:`voxlake.client.AssemblyAIClient` polling needs (eases testing)."""

    async def get_transcript(self, transcript_id: str) -> Transcript: ...

    def iter_transcript_pages(
        self, *, limit: int = ..., max_pages: int | None = ...
    ) -> AsyncIterator[TranscriptList]: ...


# --- single transcript ------------------------------------------------------------------------


def estimate_processing_s(
    audio_duration_s: float | None = None, size_bytes: int | None = None
) -> float:
    """A guess of AssemblyAI's turnaround, used to place the first poll.

    Turnaround is typically a fraction of the audio length; with only a file size we assume
    ~128 kbit/s audio (16 kB/s). Clamped to 3 s .. 5 min so a bad hint cannot stall us long.
    """
    if audio_duration_s is None and size_bytes is not None:
        audio_duration_s = size_bytes / 16_000
    if audio_duration_s is None:
        return DEFAULT_FIRST_POLL_S
    return min(max(3.0 + 0.15 * audio_duration_s, DEFAULT_FIRST_POLL_S), 300.0)


def interval_sequence(
    first_s: float = DEFAULT_FIRST_POLL_S,
    *,
    min_interval_s: float = MIN_INTERVAL_S,
    max_interval_s: float = MAX_INTERVAL_S,
    backoff: float = BACKOFF,
) -> Callable[[int], float]:
    """``delay(n)``: seconds to sleep before poll ``n`` (0 = the first poll)."""

    def delay(n: int) -> float:
        if n == 0:
            return max(first_s, 0.0)
        return min(min_interval_s * backoff ** (n - 1), max_interval_s)

    return delay


async def wait_for_completion(
    client: _TranscriptSource,
    transcript_id: str,
    *,
    timeout_s: float | None = None,
    expected_processing_s: float | None = None,
    min_interval_s: float = MIN_INTERVAL_S,
    max_interval_s: float = MAX_INTERVAL_S,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> Transcript:
    """Poll until ``completed`` or ``error`` (returned, not raised); PollTimeoutError on timeout.

    ``timeout_s=None`` waits forever: the job runs server-side anyway (see module docstring).
    """
    delay = interval_sequence(
        DEFAULT_FIRST_POLL_S if expected_processing_s is None else expected_processing_s,
        min_interval_s=min_interval_s,
        max_interval_s=max_interval_s,
    )
    started = clock()
    deadline = None if timeout_s is None else started + timeout_s
    last_status: str | None = None
    poll = 0
    while True:
        wait = delay(poll)
        if deadline is not None:
            # Never sleep past the deadline; the last poll happens right at it.
            wait = min(wait, max(deadline - clock(), 0.0))
        await sleep(wait)
        transcript = await client.get_transcript(transcript_id)
        if transcript.is_final:
            return transcript
        last_status = transcript.status.value
        log.debug("transcript %s still %s after poll %d", transcript_id, last_status, poll + 1)
        if deadline is not None and clock() >= deadline:
            raise PollTimeoutError(transcript_id, clock() - started, last_status)
        poll += 1


def raise_for_status(transcript: Transcript) -> Transcript:
    """Return a completed transcript; raise TranscriptFailedError for ``status == error``."""
    if transcript.status is TranscriptStatus.error:
        raise TranscriptFailedError(transcript.id, transcript.error)
    return transcript


# --- many transcripts -------------------------------------------------------------------------


async def fetch_statuses(
    client: _TranscriptSource,
    ids: Collection[str],
    *,
    page_limit: int = LIST_PAGE_LIMIT,
    max_pages: int | None = None,
) -> dict[str, TranscriptStatus]:
    """Statuses of ``ids`` from the list endpoint, newest first, stopping once all are seen.

    Ids not found (older than the pages read, deleted from the account's 90-day window, another
    account's, or beyond ``max_pages``) are simply absent from the result.
    """
    wanted = set(ids)
    found: dict[str, TranscriptStatus] = {}
    if not wanted:
        return found
    async for page in client.iter_transcript_pages(limit=page_limit, max_pages=max_pages):
        for item in page.transcripts:
            if item.id in wanted:
                found[item.id] = item.status
        if len(found) == len(wanted):
            break
    return found


@dataclass(frozen=True)
class PollResult:
    """A tracked job that needs no more polling.

    ``transcript`` is set when the poller already fetched it (fallback GET); otherwise fetch it
    once with ``client.get_transcript``. ``error`` is set when the id is unknown to the API
    (NotFoundError): the status is then None.
    """

    transcript_id: str
    status: TranscriptStatus | None
    transcript: Transcript | None = None
    error: VoxlakeError | None = None


@dataclass
class BatchPoller:
    """Track in-flight transcript ids; each round, learn their statuses with few requests.

    ::

        poller = BatchPoller(client)
        poller.add_many(ids)
        async for result in poller.results():
            transcript = result.transcript or await client.get_transcript(result.transcript_id)

    Each round reads list pages (at most ``ceil(pending / page_limit) + extra_pages``); ids not
    seen in them for ``missing_rounds`` consecutive rounds are fetched directly by id.
    """

    client: _TranscriptSource
    interval_s: float = 10.0
    page_limit: int = LIST_PAGE_LIMIT
    extra_pages: int = 3
    missing_rounds: int = 2
    sleep: Sleep = asyncio.sleep
    clock: Clock = time.monotonic
    _pending: dict[str, int] = field(default_factory=dict, repr=False)  # id -> rounds missing
    _last_status: dict[str, TranscriptStatus] = field(default_factory=dict, repr=False)

    def add(self, transcript_id: str) -> None:
        self._pending.setdefault(transcript_id, 0)

    def add_many(self, transcript_ids: Collection[str]) -> None:
        for transcript_id in transcript_ids:
            self.add(transcript_id)

    def discard(self, transcript_id: str) -> None:
        self._pending.pop(transcript_id, None)
        self._last_status.pop(transcript_id, None)

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._pending)

    def last_status(self, transcript_id: str) -> TranscriptStatus | None:
        return self._last_status.get(transcript_id)

    async def poll_once(self) -> list[PollResult]:
        """One round: list pages, then direct GETs for long-missing ids. Finished ids leave."""
        if not self._pending:
            return []
        max_pages = math.ceil(len(self._pending) / self.page_limit) + self.extra_pages
        statuses = await fetch_statuses(
            self.client, self._pending, page_limit=self.page_limit, max_pages=max_pages
        )
        results: list[PollResult] = []
        for transcript_id in list(self._pending):
            status = statuses.get(transcript_id)
            if status is None:
                self._pending[transcript_id] += 1
                if self._pending[transcript_id] >= self.missing_rounds:
                    result = await self._fetch_directly(transcript_id)
                    if result is not None:
                        results.append(result)
                continue
            self._pending[transcript_id] = 0
            self._last_status[transcript_id] = status
            if status.is_final:
                results.append(PollResult(transcript_id, status))
        for result in results:
            self.discard(result.transcript_id)
        return results

    async def _fetch_directly(self, transcript_id: str) -> PollResult | None:
        try:
            transcript = await self.client.get_transcript(transcript_id)
        except NotFoundError as exc:
            return PollResult(transcript_id, None, error=exc)
        self._pending[transcript_id] = 0
        self._last_status[transcript_id] = transcript.status
        if transcript.is_final:
            return PollResult(transcript_id, transcript.status, transcript=transcript)
        return None

    async def results(self, *, timeout_s: float | None = None) -> AsyncIterator[PollResult]:
        """Yield each tracked job once it finishes, until none is pending.

        Ids may be added while iterating. On timeout raises PollTimeoutError naming one
        still-pending id (all remain resumable by id).
        """
        started = self.clock()
        first = True
        while self._pending:
            if not first:
                await self.sleep(self.interval_s)
            first = False
            for result in await self.poll_once():
                yield result
            if timeout_s is not None and self._pending and self.clock() - started >= timeout_s:
                some_id = next(iter(self._pending))
                status = self._last_status.get(some_id)
                raise PollTimeoutError(
                    some_id, self.clock() - started, status.value if status else None
                )


class SharedPoller:
    """One status-polling loop for the whole run, however many chunks wait on it.

    Chunks register their transcript ids and await them; a single background loop asks the list
    endpoint for every pending id at once (``ceil(pending / 200)`` requests a round), so the
    request count does not grow with the number of chunks.

    Each id is *due* ``first_poll_s`` after it registers: a job just submitted is rarely done
    sooner than :data:`DEFAULT_FIRST_POLL_S`, one adopted from an earlier run may be done
    already (0). While no pending id is due the loop sleeps until the
    earliest due time; registering ids wakes it only to recompute that time, never to poll at
    once. Once ids are due, rounds come every interval: it backs off x1.5 while nothing finishes
    and snaps back to ``min_interval_s`` when something does. A round asks for every pending id,
    due or not: they share the pages.

    A server in this process (the embedded default) can say when one of its jobs ends
    (:meth:`nudge`). Once as many have ended since the last round as a round is paced to find
    (``tail_finds``, or every pending id if fewer: a small run's last job), the next round comes
    at once instead of on the schedule, but never sooner than ``tail_interval_s`` after the
    last one. So requests stay as paced, and the last job is seen as soon as it ends.

    In the tail (one list page of ids or fewer pending: the end of a big run, the whole of a
    small one) a round costs one request however many jobs it finds, so rounds are paced by
    how fast jobs have finished so far, to find about ``tail_finds`` each, or as many as are
    still pending (but at most half the time waited so far apart): between
    ``tail_interval_s`` (a big run's tail, many jobs a second, which then ends close to its last
    job) and ``tail_max_interval_s``. Before any job has finished the back-off applies, within
    the same bounds. Polling a small run every ``tail_interval_s`` instead cost a 12-file run
    81 status requests.
    """

    def __init__(
        self,
        client: _TranscriptSource,
        *,
        min_interval_s: float,
        max_interval_s: float,
        tail_interval_s: float,
        tail_max_interval_s: float | None = None,
        tail_finds: float = TAIL_FINDS,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self._poller = BatchPoller(client)
        self._min_interval_s = min_interval_s
        self._max_interval_s = max_interval_s
        self._tail_interval_s = tail_interval_s
        self._tail_max_interval_s = (
            max_interval_s if tail_max_interval_s is None else tail_max_interval_s
        )
        self._tail_finds = tail_finds
        self._since: float | None = None  # when the first id registered
        self._finished = 0  # ids the loop has resolved
        self._sleep = sleep
        self._clock = clock
        self._waiters: dict[str, asyncio.Future[PollResult]] = {}
        self._due: dict[str, float] = {}  # pending id -> when it is first worth polling
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # the one wait() runs on
        self._nudges = 0  # job ends heard since the last round
        self._last_round = -math.inf

    def nudge(self) -> None:
        """A job ended, says its server: poll soon (see the class doc). Thread-safe: the
        embedded server calls it from its own thread."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_nudge)

    def _on_nudge(self) -> None:
        self._nudges += 1
        self._wake.set()

    async def wait(self, first_poll_s: Mapping[str, float]) -> list[PollResult]:
        """Await the ids of ``first_poll_s`` (id -> seconds from now to its first poll).

        Results come in the mapping's order. An id already waited on keeps its due time.
        """
        loop = self._loop = asyncio.get_running_loop()
        now = self._clock()
        if self._since is None:
            self._since = now
        futures = []
        for tid, delay in first_poll_s.items():
            fut = self._waiters.get(tid)
            if fut is None:
                fut = self._waiters[tid] = loop.create_future()
                self._poller.add(tid)
                self._due[tid] = now + delay
            futures.append(fut)
        self._wake.set()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="voxlake-poller")
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        interval = self._min_interval_s
        while self._due:
            self._wake.clear()
            # The interval after the last round, and not before the first pending id is due.
            # The last round is kept across loops: ids may run out and come again (chunks).
            next_round = max(self._last_round + interval, min(self._due.values()))
            if self._nudges >= min(self._tail_finds, len(self._due)):
                next_round = min(next_round, self._last_round + self._tail_interval_s)
            now = self._clock()
            if next_round > now:
                await self._nap(next_round - now)
                continue  # woken by a registration or a nudge, or it is time: look again
            self._last_round = now
            self._nudges = 0
            try:
                results = await self._poller.poll_once()
            except VoxlakeError as exc:
                # The client already retried; a whole round failing is reported to every waiter
                # rather than silently spinning.
                log.warning("status poll round failed: %s", exc)
                results = []
                if not exc.transient:
                    for tid in list(self._due):
                        self._resolve(PollResult(tid, None, error=exc))
                    return
            crashpoint("poll")
            for result in results:
                self._resolve(result)
            self._finished += len(results)
            if results:
                interval = self._min_interval_s
            else:
                interval = min(interval * 1.5, self._max_interval_s)
            if len(self._due) <= self._poller.page_limit:
                interval = self._tail_interval(interval, now)

    def _tail_interval(self, backoff: float, now: float) -> float:
        """The next round's interval in the tail (see the class doc)."""
        if self._finished and self._since is not None:
            waited = max(now - self._since, 1e-3)
            per_s = self._finished / waited  # jobs finished per second so far
            # As many finds as are still pending, if fewer: the last job is seen sooner. At
            # most half the time waited so far: the first finds are no rate yet (a backfill's
            # last page may have only begun to finish).
            finds = min(self._tail_finds, max(len(self._due), 1))
            backoff = min(finds / per_s, waited / 2)
        return min(max(backoff, self._tail_interval_s), self._tail_max_interval_s)

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if ids register meanwhile."""
        nap = asyncio.ensure_future(self._sleep(seconds))
        woken = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((nap, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            woken.cancel()

    def _resolve(self, result: PollResult) -> None:
        self._poller.discard(result.transcript_id)
        self._due.pop(result.transcript_id, None)
        fut = self._waiters.pop(result.transcript_id, None)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def abandon(self, transcript_ids: Iterable[str]) -> None:
        """Stop tracking ids whose waiters gave up (poll timeout)."""
        for tid in transcript_ids:
            self._poller.discard(tid)
            self._due.pop(tid, None)
            fut = self._waiters.pop(tid, None)
            if fut is not None and not fut.done():
                fut.cancel()

    async def aclose(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
