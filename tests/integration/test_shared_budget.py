"""The account's request budget shared through a Prefect global concurrency limit.

Against the session's real Prefect API (``prefect_harness``): two budgets drawing on one limit
never take more than the limit grants, and a budget without a limit or without an API keeps to
its local share instead of running unlimited.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.support.secrets import KEY_A
from voxlake.client import AssemblyAIClient
from voxlake.emulator import LocalServer
from voxlake.ratelimit import RequestBudget, SharedBudgetUnavailable
from voxlake.shared_budget import (
    LOCAL_SHARE,
    PrefectSlots,
    ensure_shared_limit,
    shared_request_budget,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class CountingSlots:
    def __init__(self) -> None:
        self.taken: list[int] = []

    async def take(self, n: int) -> None:
        self.taken.append(n)


@pytest.mark.anyio
async def test_slots_are_taken_in_batches_and_spent_locally_first() -> None:
    source = CountingSlots()
    budget = RequestBudget(1_000, 300, shared=source, batch=50, fallback_requests=250)
    await asyncio.gather(*(budget.acquire() for _ in range(120)))
    assert source.taken == [50, 50, 50]


class GatedSlots:
    """A source whose batches after the first arrive only when the test says so."""

    def __init__(self) -> None:
        self.asked = 0
        self.release = asyncio.Event()

    async def take(self, n: int) -> None:
        self.asked += 1
        if self.asked > 1:
            await self.release.wait()


@pytest.mark.anyio
async def test_the_next_batch_is_asked_for_ahead_so_requests_do_not_wait_on_it() -> None:
    source = GatedSlots()
    budget = RequestBudget(1_000, 300, shared=source, batch=50, fallback_requests=250)
    asked_at = []
    for _ in range(50):  # the whole first batch, while the second is still being asked for
        await budget.acquire()
        await asyncio.sleep(0)  # as a request's I/O would, let the refill task run
        asked_at.append(source.asked)
    # Asked for once half of the first batch was spent, not when it ran out.
    assert asked_at.index(2) + 1 == 25, asked_at  # after the 25th request

    waiting = asyncio.ensure_future(budget.acquire())  # the 51st waits for that batch
    await asyncio.sleep(0)
    assert not waiting.done()
    source.release.set()
    await asyncio.wait_for(waiting, timeout=30)
    assert source.asked == 2  # one request in flight at a time, and no extra batch


@pytest.mark.anyio
async def test_the_client_spends_an_injected_budget(local_server: LocalServer) -> None:
    source = CountingSlots()
    budget = RequestBudget(1_000, 300, shared=source, batch=10, fallback_requests=250)
    async with AssemblyAIClient(api_key=KEY_A, base_url=local_server.base_url, budget=budget) as c:
        await c.list_transcripts(limit=1)
    assert source.taken == [10]


@pytest.mark.anyio
@pytest.mark.usefixtures("prefect_harness")
async def test_two_budgets_in_one_limit_never_take_more_than_it_grants() -> None:
    name = f"test-requests-{uuid.uuid4().hex[:8]}"
    limit, decay, batch, demand = 20, 10.0, 5, 50
    # Prefect's bucket starts empty here, so by any time t it has granted at most
    # limit + decay * (t - start) slots in all; every acquire spends one of them.
    start = time.monotonic()
    await ensure_shared_limit(name, limit=limit, decay_per_s=decay)
    budgets = [shared_request_budget(name, batch=batch) for _ in range(2)]
    acquired = [0, 0]
    worst_margin = float("inf")

    async def spend(k: int) -> None:
        nonlocal worst_margin
        for _ in range(demand):
            await budgets[k].acquire()
            acquired[k] += 1
            allowed = limit + decay * (time.monotonic() - start)
            worst_margin = min(worst_margin, allowed - sum(acquired))

    await asyncio.gather(spend(0), spend(1))

    assert acquired == [demand, demand]
    assert worst_margin >= 0, "the two budgets together exceeded the shared limit"
    assert all(b.max_requests == 20_000 for b in budgets)  # neither fell back


@pytest.mark.anyio
@pytest.mark.usefixtures("prefect_harness")
async def test_a_missing_limit_falls_back_to_the_local_share(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = shared_request_budget(f"no-such-limit-{uuid.uuid4().hex[:8]}")
    with caplog.at_level(logging.WARNING, logger="voxlake.ratelimit"):
        await budget.acquire()
    assert budget.max_requests == LOCAL_SHARE
    assert "local share of 5000 requests" in caplog.text


@pytest.mark.anyio
async def test_no_prefect_api_is_unavailable_not_unlimited() -> None:
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(SharedBudgetUnavailable, match="no Prefect API"):
            await PrefectSlots().take(1)
        budget = shared_request_budget()
        await budget.acquire()
    assert budget.max_requests == LOCAL_SHARE


def test_the_figures_keep_any_account_limit_and_the_default_is_the_documented_one() -> None:
    from voxlake.shared_budget import DEFAULT_FIGURES, MAX_PROCESSES, account_figures, figures_for

    assert (DEFAULT_FIGURES.limit, DEFAULT_FIGURES.decay_per_s, DEFAULT_FIGURES.batch) == (
        6_000,
        33.0,
        100,
    )
    for requests, window in ((20_000, 300.0), (600, 60.0), (100, 10.0), (1_000_000, 60.0)):
        figures = figures_for(requests, window)
        assert figures.granted_per_window(MAX_PROCESSES) <= requests
        assert figures.decay_per_s > 0 and figures.batch >= 1
    assert account_figures({"VOXLAKE_ACCOUNT_RATE_LIMIT": "600/60"}) == figures_for(600, 60.0)
    assert account_figures({}) == DEFAULT_FIGURES
    with pytest.raises(ValueError, match="REQUESTS/SECONDS"):
        account_figures({"VOXLAKE_ACCOUNT_RATE_LIMIT": "600"})
