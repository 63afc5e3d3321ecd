"""Polling with an injected clock and sleep: no real waiting anywhere in this module."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest

from tests.support.secrets import KEY_A
from voxlake.client import AssemblyAIClient
from voxlake.errors import PollTimeoutError, TranscriptFailedError
from voxlake.models import Transcript, TranscriptStatus
from voxlake.polling import (
    BatchPoller,
    PollResult,
    SharedPoller,
    estimate_processing_s,
    fetch_statuses,
    interval_sequence,
    raise_for_status,
    wait_for_completion,
)
from voxlake.retry import RetryPolicy

BASE = "https://api.test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeAccount:
    """An in-memory account behind httpx.MockTransport: list paging + GET by id.

    Same list semantics as AssemblyAI and the emulator: newest first, ``before_id`` pages
    to older transcripts, ``prev_url`` names the oldest id on the page.
    """

    def __init__(self, n: int) -> None:
        # index 0 = oldest; ids sort by creation
        self.ids = [f"t{i:05d}" for i in range(n)]
        self.status = dict.fromkeys(self.ids, TranscriptStatus.processing)
        self.list_requests = 0
        self.get_requests = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def client(self) -> AssemblyAIClient:
        return AssemblyAIClient(
            api_key=KEY_A, base_url=BASE, transport=self.transport(), retry=RetryPolicy.none()
        )

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v2/transcript":
            return self._list(parse_qs(request.url.query.decode()))
        tid = path.rsplit("/", 1)[-1]
        self.get_requests += 1
        if tid not in self.status:
            return httpx.Response(404, json={"error": "Not found"})
        return httpx.Response(200, json=self._transcript(tid))

    def _transcript(self, tid: str) -> dict[str, object]:
        status = self.status[tid]
        body: dict[str, object] = {"id": tid, "status": status.value, "audio_url": "https://a"}
        if status is TranscriptStatus.error:
            body["error"] = "Audio duration is too short."
        return body

    def _list(self, query: dict[str, list[str]]) -> httpx.Response:
        self.list_requests += 1
        limit = int(query.get("limit", ["10"])[0])
        newest_first = list(reversed(self.ids))
        if "before_id" in query:
            newest_first = newest_first[newest_first.index(query["before_id"][0]) + 1 :]
        page = newest_first[:limit]
        url = f"{BASE}/v2/transcript?limit={limit}"
        items = [
            {
                "id": tid,
                "resource_url": f"{BASE}/v2/transcript/{tid}",
                "status": self.status[tid].value,
                "created": "2026-01-01T00:00:00.000000",
                "completed": None,
                "audio_url": "https://a",
                "error": None,
            }
            for tid in page
        ]
        details = {
            "limit": limit,
            "result_count": len(page),
            "current_url": url,
            "prev_url": f"{url}&before_id={page[-1]}" if page else None,
            "next_url": f"{url}&after_id={page[0]}" if page else None,
        }
        return httpx.Response(200, json={"page_details": details, "transcripts": items})


class SteppedClock:
    """A monotonic clock that moves only when the test wakes the one sleeper waiting on it.

    Each ``sleep`` reports its wake-up time on ``naps`` and parks; :meth:`wake` moves the clock
    there and resumes the sleeper. A sleep cancelled before that (the poller woken by a
    registration) just ends, and the clock stays where it is.
    """

    def __init__(self) -> None:
        self.now = 1000.0
        self.naps: asyncio.Queue[float] = asyncio.Queue()
        self._sleeper: tuple[float, asyncio.Future[None]] | None = None

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._sleeper = (self.now + seconds, fut)
        self.naps.put_nowait(self.now + seconds)
        try:
            await fut
        finally:
            if self._sleeper is not None and self._sleeper[1] is fut:
                self._sleeper = None

    def wake(self) -> None:
        assert self._sleeper is not None, "nobody sleeps"
        self.now, fut = self._sleeper
        fut.set_result(None)


class TimedAccount(FakeAccount):
    """A FakeAccount whose jobs finish at given times of ``clock``; it notes when lists are read."""

    def __init__(self, clock: SteppedClock, finish_at: dict[str, float]) -> None:
        super().__init__(0)
        self.clock = clock
        self.finish_at = finish_at
        self.ids = list(finish_at)
        self.list_times: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        for tid, at in self.finish_at.items():
            done = self.clock.now >= at
            self.status[tid] = TranscriptStatus.completed if done else TranscriptStatus.processing
        if request.url.path == "/v2/transcript":
            self.list_times.append(self.clock.now)
        return super().handle(request)


def shared_poller(
    client: AssemblyAIClient, clock: SteppedClock, tail_max_interval_s: float = 0.5
) -> SharedPoller:
    """The run's settings (voxlake.run.state.RunSettings) on the test's clock: by default those
    of a run with ``VOXLAKE_POLL_FIRST_S=0.2`` (the tail polled every 0.5 s); 7.5 s is the
    production default's bound (first poll 3 s after a submit)."""
    return SharedPoller(
        client,
        min_interval_s=2.0,
        max_interval_s=15.0,
        tail_interval_s=0.5,
        tail_max_interval_s=tail_max_interval_s,
        tail_finds=3.0,
        sleep=clock.sleep,
        clock=clock,
    )


async def wake_until_done(clock: SteppedClock, waiting: asyncio.Task[list[PollResult]]) -> None:
    """Wake each sleep of the poller at its time until ``waiting`` has its results."""
    while not waiting.done():
        nap = asyncio.ensure_future(clock.naps.get())
        await asyncio.wait((nap, waiting), return_when=asyncio.FIRST_COMPLETED)
        if nap.done():
            clock.wake()  # the poller sleeps (perhaps on other ids' behalf): its time has come
        else:
            nap.cancel()


class ScriptedStatuses:
    """get_transcript returning a scripted status sequence, recording the clock at each call."""

    def __init__(self, clock: FakeClock, statuses: list[str]) -> None:
        self.clock = clock
        self.statuses: Iterator[str] = iter(statuses)
        self.calls: list[float] = []

    async def get_transcript(self, transcript_id: str) -> Transcript:
        self.calls.append(self.clock.now)
        return Transcript(id=transcript_id, status=next(self.statuses), audio_url="https://a")

    def iter_transcript_pages(self, **_kw: object) -> object:
        raise AssertionError("not used")


def test_interval_sequence_first_then_backoff_capped() -> None:
    delay = interval_sequence(42.0, max_interval_s=20.0)
    assert [round(delay(n), 3) for n in range(8)] == [
        42.0,
        3.0,
        4.5,
        6.75,
        10.125,
        15.188,
        20.0,
        20.0,
    ]


def test_estimate_processing_s() -> None:
    assert estimate_processing_s() == 3.0
    assert estimate_processing_s(audio_duration_s=600) == pytest.approx(93.0)
    assert estimate_processing_s(size_bytes=16_000 * 600) == pytest.approx(93.0)
    assert estimate_processing_s(audio_duration_s=10 * 3600) == 300.0


@pytest.mark.anyio
async def test_wait_adapts_interval_and_returns_completed() -> None:
    clock = FakeClock()
    client = ScriptedStatuses(clock, ["queued", "processing", "processing", "completed"])
    t = await wait_for_completion(client, "abc", sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]
    assert t.status is TranscriptStatus.completed
    assert clock.sleeps == [3.0, 3.0, 4.5, 6.75]
    assert len(client.calls) == 4


@pytest.mark.anyio
async def test_first_poll_placed_by_expected_processing_time() -> None:
    clock = FakeClock()
    client = ScriptedStatuses(clock, ["completed"])
    await wait_for_completion(
        client,  # type: ignore[arg-type]
        "abc",
        expected_processing_s=estimate_processing_s(audio_duration_s=600),
        sleep=clock.sleep,
        clock=clock,
    )
    assert clock.sleeps == [pytest.approx(93.0)]


@pytest.mark.anyio
async def test_error_transcript_is_returned_as_data_and_raise_for_status_converts() -> None:
    clock = FakeClock()
    client = ScriptedStatuses(clock, ["processing", "error"])
    t = await wait_for_completion(client, "abc", sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]
    assert t.status is TranscriptStatus.error
    with pytest.raises(TranscriptFailedError) as info:
        raise_for_status(t)
    assert "abc" in str(info.value)
    done = Transcript(id="x", status="completed", audio_url="https://a")
    assert raise_for_status(done) is done


@pytest.mark.anyio
async def test_timeout_names_the_id_and_how_to_resume() -> None:
    clock = FakeClock()
    client = ScriptedStatuses(clock, ["processing"] * 100)
    with pytest.raises(PollTimeoutError) as info:
        await wait_for_completion(
            client,  # type: ignore[arg-type]
            "tx-123",
            timeout_s=30,
            sleep=clock.sleep,
            clock=clock,
        )
    err = info.value
    assert err.transcript_id == "tx-123" and err.last_status == "processing"
    assert "tx-123" in str(err) and "do NOT resubmit" in str(err)
    assert "poll transcript tx-123 by id" in str(err)
    # Never slept past the deadline: 3 + 3 + 4.5 + 6.75 + 10.125 = 27.375, then 2.625 to 30.
    assert sum(clock.sleeps) == pytest.approx(30.0)
    assert clock.sleeps[-1] == pytest.approx(2.625)


@pytest.mark.anyio
async def test_fetch_statuses_uses_ceil_n_over_200_list_requests() -> None:
    account = FakeAccount(450)
    account.status["t00000"] = TranscriptStatus.completed
    async with account.client() as client:
        statuses = await fetch_statuses(client, account.ids)
    assert len(statuses) == 450
    assert statuses["t00000"] is TranscriptStatus.completed
    assert account.list_requests == math.ceil(450 / 200) == 3
    assert account.get_requests == 0


@pytest.mark.anyio
async def test_fetch_statuses_stops_as_soon_as_all_seen() -> None:
    account = FakeAccount(5000)
    recent = account.ids[-250:]  # our jobs are the newest ones
    async with account.client() as client:
        statuses = await fetch_statuses(client, recent)
    assert set(statuses) == set(recent)
    assert account.list_requests == 2


@pytest.mark.anyio
async def test_fetch_statuses_reports_missing_ids_by_absence() -> None:
    account = FakeAccount(30)
    async with account.client() as client:
        statuses = await fetch_statuses(client, [*account.ids[:3], "never-existed"])
    assert "never-existed" not in statuses and len(statuses) == 3
    assert account.list_requests == 1  # 30 < 200: one short page is the last page


@pytest.mark.anyio
async def test_batch_poller_yields_each_finished_job_once() -> None:
    account = FakeAccount(1000)
    ours = account.ids[-450:]
    clock = FakeClock()
    async with account.client() as client:
        poller = BatchPoller(client, interval_s=10, sleep=clock.sleep, clock=clock)
        poller.add_many(ours)
        assert await poller.poll_once() == []
        first_round = account.list_requests
        assert first_round == 3
        for tid in ours[:100]:
            account.status[tid] = TranscriptStatus.completed
        for tid in ours[100:110]:
            account.status[tid] = TranscriptStatus.error
        finished = await poller.poll_once()
        assert {r.transcript_id for r in finished} == set(ours[:110])
        assert all(r.transcript is None for r in finished)
        assert len(poller.pending) == 340
        for tid in ours:
            if account.status[tid] is TranscriptStatus.processing:
                account.status[tid] = TranscriptStatus.completed
        rest = [r async for r in poller.results()]
        assert {r.transcript_id for r in rest} == set(ours[110:])
        assert not poller.pending
    assert account.get_requests == 0  # statuses came from list pages only


@pytest.mark.anyio
async def test_batch_poller_falls_back_to_get_for_ids_missing_from_list() -> None:
    account = FakeAccount(10)
    clock = FakeClock()
    async with account.client() as client:
        poller = BatchPoller(client, missing_rounds=2, sleep=clock.sleep, clock=clock)
        poller.add_many(["gone", account.ids[0]])
        account.ids.remove("t00000")  # not listed (e.g. older than 90 days) but GET-able
        account.status["t00000"] = TranscriptStatus.completed
        assert await poller.poll_once() == []  # first miss: just counted
        results = {r.transcript_id: r for r in await poller.poll_once()}
    assert results["t00000"].transcript is not None
    assert results["t00000"].status is TranscriptStatus.completed
    assert results["gone"].status is None and results["gone"].error is not None
    assert not poller.pending


@pytest.mark.anyio
async def test_batch_poller_timeout_is_resumable() -> None:
    account = FakeAccount(3)
    clock = FakeClock()
    async with account.client() as client:
        poller = BatchPoller(client, interval_s=10, sleep=clock.sleep, clock=clock)
        poller.add_many(account.ids)
        with pytest.raises(PollTimeoutError) as info:
            async for _ in poller.results(timeout_s=25):
                pass
    assert info.value.transcript_id in account.ids
    assert clock.sleeps == [10, 10, 10]
    assert len(poller.pending) == 3  # still tracked: resume by calling results() again


@pytest.mark.anyio
async def test_shared_poller_first_polls_fresh_jobs_when_due_then_every_tail_interval() -> None:
    clock = SteppedClock()
    account = TimedAccount(clock, {"a": 1003.2, "b": 1003.9, "c": 1004.2})
    async with account.client() as client:
        poller = shared_poller(client, clock)
        waiting = asyncio.create_task(poller.wait(dict.fromkeys(account.ids, 3.0)))
        assert await clock.naps.get() == 1003.0  # nothing to ask before the jobs are due
        assert account.list_requests == 0
        clock.wake()
        await wake_until_done(clock, waiting)
    results = waiting.result()
    assert [(r.transcript_id, r.status) for r in results] == [
        (tid, TranscriptStatus.completed) for tid in ("a", "b", "c")
    ]
    # Due at 1003 (none done yet), then every 0.5 s (one page pending: the tail) until c is.
    assert account.list_times == [1003.0, 1003.5, 1004.0, 1004.5]
    assert account.get_requests == 0


@pytest.mark.anyio
async def test_shared_poller_polls_resumed_jobs_at_once_and_registering_never_polls() -> None:
    clock = SteppedClock()
    account = TimedAccount(clock, {"old": 0.0, "a": 1004.0, "b": 1006.2})
    async with account.client() as client:
        poller = shared_poller(client, clock)
        fresh = asyncio.create_task(poller.wait({"a": 3.0}))
        assert await clock.naps.get() == 1003.0
        # A job adopted from an earlier run may be done already: due at once, even while the
        # loop sleeps until a later due time.
        resumed = asyncio.create_task(poller.wait({"old": 0.0}))
        assert await clock.naps.get() == 1003.0  # polled "old" (done), back to a's due time
        assert account.list_times == [1000.0]
        assert [r.status for r in await resumed] == [TranscriptStatus.completed]
        clock.wake()
        assert await clock.naps.get() == 1003.5  # a not done: the tail interval
        # Registering more ids only moves the next round to their due time if that is later.
        later = asyncio.create_task(poller.wait({"b": 3.0}))
        assert await clock.naps.get() == 1003.5
        assert account.list_times == [1000.0, 1003.0]
        clock.wake()
        await wake_until_done(clock, fresh)
        await wake_until_done(clock, later)
    assert [r.status for r in later.result()] == [TranscriptStatus.completed]
    # a was seen at 1004; b, due at 1006, was not asked for again until then.
    assert account.list_times == [1000.0, 1003.0, 1003.5, 1004.0, 1006.0, 1006.5]


@pytest.mark.anyio
async def test_a_small_runs_rounds_are_paced_by_how_fast_jobs_finish() -> None:
    """12 jobs finishing one a second: rounds 1.5-3.4 s apart, 5 in all, where a round every
    0.5 s took 19; the last job is seen soon after it finished."""
    clock = SteppedClock()
    account = TimedAccount(clock, {f"j{i:02d}": 1001.0 + i for i in range(12)})
    async with account.client() as client:
        poller = shared_poller(client, clock, tail_max_interval_s=7.5)
        waiting = asyncio.create_task(poller.wait(dict.fromkeys(account.ids, 3.0)))
        await wake_until_done(clock, waiting)
    assert [r.status for r in waiting.result()] == [TranscriptStatus.completed] * 12
    # 3 found in 3 s: 3 s apart would find 3, but no more than half the 3 s waited (1.5); then
    # 4 in 4.5 s, 6 in 6.75 s: ~3 a round; 10 in 10.125 s, with 2 pending: paced to find 2.
    assert account.list_times == pytest.approx([1003.0, 1004.5, 1006.75, 1010.125, 1012.15])


@pytest.mark.anyio
async def test_slow_jobs_are_polled_every_few_seconds_at_most() -> None:
    """Jobs finishing a minute apart: rounds stay within the tail's bound (7.5 s)."""
    clock = SteppedClock()
    account = TimedAccount(clock, {"a": 1010.0, "b": 1070.0})
    async with account.client() as client:
        poller = shared_poller(client, clock, tail_max_interval_s=7.5)
        waiting = asyncio.create_task(poller.wait(dict.fromkeys(account.ids, 3.0)))
        await wake_until_done(clock, waiting)
    gaps = [b - a for a, b in zip(account.list_times, account.list_times[1:], strict=False)]
    assert max(gaps) == 7.5
    assert account.list_times[-1] - 1070.0 < 7.5


@pytest.mark.anyio
async def test_a_big_runs_tail_is_still_polled_every_half_second() -> None:
    """200 jobs finishing 40 a second (a backfill's last page): rounds every 0.5 s, so the run
    ends close to its last job."""
    clock = SteppedClock()
    account = TimedAccount(clock, {f"j{i:03d}": 1003.0 + i / 40 for i in range(200)})
    async with account.client() as client:
        poller = shared_poller(client, clock, tail_max_interval_s=7.5)
        waiting = asyncio.create_task(poller.wait(dict.fromkeys(account.ids, 3.0)))
        await wake_until_done(clock, waiting)
    # One found at 1003 (no rate yet: half the 3 s waited), 61 at 1004.5, then every 0.5 s.
    assert account.list_times == [1003.0] + [1004.5 + 0.5 * n for n in range(8)]


@pytest.mark.anyio
async def test_nudges_from_the_server_poll_once_a_rounds_worth_have_ended() -> None:
    """The embedded server says when a job ends (voxlake run on the embedded default): the
    poller asks once as many have ended as a round is paced to find (here every pending one),
    not at the jobs' due time, but never sooner than the tail interval after its last round."""
    clock = SteppedClock()
    account = TimedAccount(clock, {"a": 1001.2, "b": 1001.3, "c": 1001.5})
    async with account.client() as client:
        poller = shared_poller(client, clock)
        first = asyncio.create_task(poller.wait({"a": 3.0, "b": 3.0}))
        assert await clock.naps.get() == 1003.0  # due in 3 s
        clock.now = 1001.2  # a ends, and its server says so: one of two, not yet worth a round
        poller.nudge()
        assert await clock.naps.get() == 1003.0
        assert account.list_times == []
        clock.now = 1001.3  # b ends: every pending job has, so it asks at once
        poller.nudge()
        assert [r.status for r in await first] == [TranscriptStatus.completed] * 2
        assert account.list_times == [1001.3]
        later = asyncio.create_task(poller.wait({"c": 3.0}))
        assert await clock.naps.get() == 1004.3  # registered at 1001.3, due 3 s later
        clock.now = 1001.5  # c ends: asked half a second after the last round
        poller.nudge()
        assert await clock.naps.get() == 1001.8
        clock.wake()
        assert [r.status for r in await later] == [TranscriptStatus.completed]
    assert account.list_times == [1001.3, 1001.8]
