"""A client-side request budget, so a run never trips the account's rate limit by itself.

AssemblyAI allows 20,000 requests per 5 minutes per account and answers 429 beyond. A backfill of
10,000 files needs ~30,000 requests: without a budget it would send 20,000 in two minutes and
then stall on ``Retry-After``. :class:`RequestBudget` spaces requests over a sliding window
instead. It is flow control, not a retry: no request is sent twice because of it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class RequestBudget:
    """At most ``max_requests`` sends in any ``window_s`` seconds, for one event loop.

    ``margin_s`` widens the window a little: the server counts arrivals, we count departures,
    and a request that leaves just inside our window may land just outside the server's.
    """

    def __init__(
        self,
        max_requests: int,
        window_s: float,
        *,
        margin_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_requests < 1 or window_s <= 0:
            raise ValueError("a request budget needs max_requests >= 1 and window_s > 0")
        self.max_requests = max_requests
        self.window_s = window_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()

    async def acquire(self) -> None:
        """Wait until one more request fits in the window, then count it as sent."""
        while True:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.window_s:
                self._sent.popleft()
            # No await between the check and the append: asyncio makes this atomic.
            if len(self._sent) < self.max_requests:
                self._sent.append(now)
                return
            await self._sleep(self._sent[0] + self.window_s - now)

    def __repr__(self) -> str:
        return f"RequestBudget({self.max_requests} per {self.window_s:g} s)"
