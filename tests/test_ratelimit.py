"""The client's request budget: spaces requests so a run never trips the account rate limit."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.secrets import KEY_A
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
