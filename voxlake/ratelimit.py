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

The window is the account's, but a budget counts one process. When several flow runs or
workers share the account, a budget can also draw on a shared :class:`SlotSource` (a Prefect
global concurrency limit, :mod:`voxlake.shared_budget`): it takes slots from it in batches and
spends them locally, on top of its own window. The next batch is asked for while half of the
current one is left, so requests do not wait on the source's round trip (a Prefect server under
load answers in seconds); a process therefore holds at most two batches. If the source cannot be
reached, the budget falls back to ``fallback_requests`` per window (a share of the account,
never "unlimited") for the rest of its life.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from voxlake.errors import VoxlakeError

log = logging.getLogger("voxlake.ratelimit")

#: A shared batch that takes this long to arrive is logged: the whole process waited for it.
SLOW_SHARED_TAKE_S = 5.0


class SharedBudgetUnavailable(VoxlakeError):
    """The shared budget cannot be used (API unreachable, limit missing); fall back locally."""


class SlotSource(Protocol):
    """Slots of a budget shared by processes: each slot is one request."""

    async def take(self, n: int) -> None:
        """Wait until ``n`` slots are this process's; raise SharedBudgetUnavailable if unable."""
        ...


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
        shared: SlotSource | None = None,
        batch: int = 50,
        fallback_requests: int | None = None,
    ) -> None:
        if max_requests < 1 or window_s <= 0:
            raise ValueError("a request budget needs max_requests >= 1 and window_s > 0")
        if shared is not None and (batch < 1 or not fallback_requests or fallback_requests < 1):
            raise ValueError("a shared budget needs batch >= 1 and fallback_requests >= 1")
        self.max_requests = max_requests
        self.window_s = window_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self.reserved = 0  # slots kept for non-deferrable requests still to come
        self._shared = shared
        self.batch = batch
        self.fallback_requests = fallback_requests
        self._granted = 0  # shared slots taken and not yet spent
        self._refill: asyncio.Task[None] | None = None  # the next batch, being asked for

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
        if self._shared is not None:
            await self._take_shared_slot()
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

    async def _take_shared_slot(self) -> None:
        while self._shared is not None:
            if self._granted > 0:
                self._granted -= 1
                if self._granted <= self.batch // 2:
                    self._start_refill()
                return
            # Spent: wait for the batch in flight. shield: a cancelled request must not cancel
            # the refill that the other waiting requests share.
            await asyncio.shield(self._start_refill())

    def _start_refill(self) -> asyncio.Task[None]:
        """The one refill in flight, started if none is."""
        if self._refill is None:
            self._refill = asyncio.ensure_future(self._take_batch())
        return self._refill

    async def _take_batch(self) -> None:
        try:
            assert self._shared is not None
            asked = time.monotonic()
            await self._shared.take(self.batch)
            self._granted += self.batch
            waited = time.monotonic() - asked
            if waited >= SLOW_SHARED_TAKE_S:
                # Every request of this process waited with it: say so, and on whom.
                log.warning(
                    "waited %.1f s for %d slots of the shared request budget %r",
                    waited,
                    self.batch,
                    self._shared,
                )
        except Exception as exc:  # unreachable, refused or missing: never "unlimited"
            self._fall_back(exc)
        finally:
            self._refill = None

    def _fall_back(self, reason: BaseException) -> None:
        assert self.fallback_requests is not None
        self._shared = None
        self.max_requests = min(self.max_requests, self.fallback_requests)
        log.warning(
            "shared request budget unavailable (%s); this process keeps to its local share of "
            "%d requests per %g s",
            reason,
            self.max_requests,
            self.window_s,
        )

    def __repr__(self) -> str:
        shared = f", shared {self._shared!r} in batches of {self.batch}" if self._shared else ""
        return f"RequestBudget({self.max_requests} per {self.window_s:g} s{shared})"
