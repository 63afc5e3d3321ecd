"""A client-side request budget, so a run never trips the account's rate limit by itself.

AssemblyAI allows 20,000 requests per 5 minutes per account and answers 429 beyond. A backfill of
10,000 files needs ~30,000 requests: without a budget it would send 20,000 in two minutes and
then stall on ``Retry-After``. :class:`RequestBudget` spaces requests over a sliding window
instead. It is flow control, not a retry: no request is sent twice because of it.

When a run needs more requests than one window holds, their order decides its length: a job
submitted late still has to be processed, while a finished transcript can be fetched at any time.
So the caller may ``reserve`` budget for the uploads and submits still to come, and deferrable
requests (reads: fetches, status polls) leave that much of the window free. A 10,000-file run
(30,000 requests) then submits every job in the first window and fetches in the next.
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
        self.reserved = 0  # slots kept for non-deferrable requests still to come

    def reserve(self, n: int) -> None:
        """Keep ``n`` more slots for non-deferrable requests (each one sent uses up one)."""
        self.reserved = max(0, self.reserved + n)

    async def acquire(self, *, deferrable: bool = False) -> None:
        """Wait until one more request fits in the window, then count it as sent.

        A deferrable request also leaves the reserved slots free. At most ``max_requests - 1``
        are honoured, so a reservation that is never used up delays reads by at most one window.
        """
        if not deferrable:
            self.reserved = max(0, self.reserved - 1)
        while True:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.window_s:
                self._sent.popleft()
            keep_free = min(self.reserved, self.max_requests - 1) if deferrable else 0
            # No await between the check and the append: asyncio makes this atomic.
            if len(self._sent) + keep_free < self.max_requests:
                self._sent.append(now)
                return
            # The slot this request needs frees when this many of the oldest have left.
            leaving = len(self._sent) + keep_free - self.max_requests
            await self._sleep(self._sent[leaving] + self.window_s - now)

    def __repr__(self) -> str:
        return f"RequestBudget({self.max_requests} per {self.window_s:g} s)"
