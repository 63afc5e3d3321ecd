"""The client's request budget: spaces requests so a run never trips the account rate limit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.secrets import KEY_A
from voxlake.client import AssemblyAIClient
from voxlake.config import ClientSettings
from voxlake.emulator import LocalServer
from voxlake.errors import RateLimitError
from voxlake.ratelimit import RequestBudget
from voxlake.retry import RetryPolicy


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_budget_waits_for_the_oldest_request_to_leave_the_window() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = RequestBudget(3, 10.0, margin_s=0.5, clock=lambda: now[0], sleep=sleep)
    for t in (0.0, 1.0, 2.0):
        now[0] = t
        await budget.acquire()
    assert slept == []
    now[0] = 3.0
    await budget.acquire()  # the 4th must wait until the 1st (t=0) leaves the 10.5 s window
    assert slept == [7.5]
    assert now[0] == 10.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.anyio
async def test_reads_leave_reserved_slots_to_uploads_and_submits() -> None:
    clock = FakeClock()
    budget = RequestBudget(5, 10.0, margin_s=0.0, clock=lambda: clock.now, sleep=clock.sleep)
    budget.reserve(3)  # e.g. one upload + submit and one submit still to come
    await budget.acquire(deferrable=True)
    await budget.acquire(deferrable=True)  # 2 sent + 3 reserved: the window is spoken for
    assert clock.slept == []
    clock.now = 1.0
    for _ in range(3):
        await budget.acquire()  # the reserved ones go at once, each using up its reservation
    assert clock.slept == [] and budget.reserved == 0
    clock.now = 2.0
    await budget.acquire(deferrable=True)  # window full: waits for the oldest (t=0) to leave
    assert clock.slept == [8.0]


@pytest.mark.anyio
async def test_a_read_waits_for_as_many_slots_as_are_reserved() -> None:
    clock = FakeClock()
    budget = RequestBudget(4, 10.0, margin_s=0.0, clock=lambda: clock.now, sleep=clock.sleep)
    for t in (0.0, 1.0):
        clock.now = t
        await budget.acquire(deferrable=True)
    budget.reserve(2)
    clock.now = 2.0
    # 2 sent + 2 reserved = 4: the read needs the oldest send (t=0) gone, at t=10.
    await budget.acquire(deferrable=True)
    assert clock.slept == [8.0]


@pytest.mark.anyio
async def test_an_unused_reservation_delays_reads_by_one_window_at_most() -> None:
    clock = FakeClock()
    budget = RequestBudget(3, 10.0, margin_s=0.0, clock=lambda: clock.now, sleep=clock.sleep)
    budget.reserve(1_000)  # e.g. items that failed without giving their reservation back
    await budget.acquire(deferrable=True)  # only max_requests - 1 are honoured
    await budget.acquire(deferrable=True)  # waits until the first has left the window
    assert clock.slept == [10.0]
    budget.reserve(-5_000)
    assert budget.reserved == 0


@pytest.mark.anyio
async def test_a_burst_stays_under_the_server_limit_only_with_the_budget(
    make_server: Callable[..., LocalServer],
) -> None:
    server = make_server(rate_limit=5, rate_window_s=1.0)
    settings = ClientSettings(
        api_key=KEY_A, base_url=server.base_url, request_budget=5, request_budget_window_s=1.0
    )
    budgeted = AssemblyAIClient(settings, retry=RetryPolicy.none())
    async with budgeted as client:
        for _ in range(12):
            await client.list_transcripts(limit=1)
    assert server.stats()["rate_limited"] == 0

    unbudgeted = AssemblyAIClient(
        settings.model_copy(update={"request_budget": None}), retry=RetryPolicy.none()
    )
    async with unbudgeted as client:
        with pytest.raises(RateLimitError):
            for _ in range(12):
                await client.list_transcripts(limit=1)
    assert server.stats()["rate_limited"] >= 1
