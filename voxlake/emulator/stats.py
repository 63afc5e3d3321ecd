"""Counters behind GET /_voxlake/stats, with change notification for condition waits.

Mutations happen on the server's event loop; readers may be other threads (tests). Every change
bumps ``version`` and wakes both in-process waiters (``wait_until``) and HTTP long-pollers
(``GET /_voxlake/stats?since=<version>&timeout=<s>``), so nobody needs to sleep.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

_RECENT = 2000


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.version = 0
        self.requests_by_route: Counter[str] = Counter()
        self.requests_by_status: Counter[str] = Counter()
        self.submissions_by_key: Counter[str] = Counter()
        self.faults: dict[str, Counter[str]] = {}
        self.rate_limited = 0
        self.upload_bytes = 0
        self.uploads = 0
        self.queued = 0
        self.processing = 0
        self.max_concurrent_processing = 0
        self.completed = 0
        self.errored = 0
        self.webhook_attempts = 0
        self.webhooks_delivered = 0
        self.webhooks_failed = 0
        self.started_order: deque[str] = deque(maxlen=_RECENT)
        self.finished_order: deque[str] = deque(maxlen=_RECENT)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_changed: asyncio.Event | None = None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._async_changed = asyncio.Event()

    def change(self, fn: Callable[[Stats], None]) -> None:
        """Apply a mutation under the lock and notify every waiter."""
        with self._lock:
            fn(self)
            self.version += 1
            self._lock.notify_all()
        if self._async_changed is not None:
            # Swap in a fresh event: long-pollers hold the old one, which is now set.
            ev, self._async_changed = self._async_changed, asyncio.Event()
            ev.set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "version": self.version,
                "requests_by_route": dict(self.requests_by_route),
                "requests_by_status": dict(self.requests_by_status),
                "submissions_by_key": dict(self.submissions_by_key),
                "faults_injected": {r: dict(c) for r, c in self.faults.items()},
                "faults_total": sum(sum(c.values()) for c in self.faults.values()),
                "rate_limited": self.rate_limited,
                "upload_bytes": self.upload_bytes,
                "uploads": self.uploads,
                "queued": self.queued,
                "processing": self.processing,
                "max_concurrent_processing": self.max_concurrent_processing,
                "completed": self.completed,
                "errored": self.errored,
                "webhook_attempts": self.webhook_attempts,
                "webhooks_delivered": self.webhooks_delivered,
                "webhooks_failed": self.webhooks_failed,
                "started_order": list(self.started_order),
                "finished_order": list(self.finished_order),
            }

    def wait_until(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Block (another thread than the server's) until predicate(snapshot) holds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                snap = self.snapshot()
                if predicate(snap):
                    return snap
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout}s; stats: {snap}")
                self._lock.wait(left)

    async def wait_changed(self, since: int, timeout: float) -> None:
        """Async long-poll: return once version > since or timeout passes."""
        if self.version > since or self._async_changed is None:
            return
        ev = self._async_changed
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            return
