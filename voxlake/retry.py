"""The client's only retry loop.

:class:`RetryPolicy` retries an async operation while it raises a :class:`VoxlakeError` with
``transient=True`` (429, 5xx, network errors, timeouts), up to ``max_attempts`` tries in total.
Delays are exponential with full jitter (``uniform(0, min(max_delay, base_delay * 2**n))``)
unless the server sent ``Retry-After`` (seconds or an HTTP date), which is honoured as given,
capped at ``max_retry_after``. Terminal errors (400, 401, 403, 404, ...) are raised at once.

The raised error carries ``attempts``, so Prefect task retries can skip errors the client
already retried (architecture: one retry layer per concern).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from voxlake.errors import VoxlakeError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

MAX_ATTEMPTS_LIMIT = 20
log = logging.getLogger("voxlake.retry")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 300.0
    # Injectable so tests never really wait and jitter is deterministic.
    sleep: Sleep = field(default=asyncio.sleep, compare=False, repr=False)
    rng: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ValueError(f"max_attempts must be within 1..{MAX_ATTEMPTS_LIMIT}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("delays must be >= 0")

    @classmethod
    def none(cls) -> RetryPolicy:
        """Exactly one attempt."""
        return cls(max_attempts=1)

    def delay_for(self, retry_number: int, error: VoxlakeError) -> float:
        """Seconds to wait before retry ``retry_number`` (1 = first retry)."""
        retry_after: float | None = getattr(error, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry_number - 1))
        return self.rng() * ceiling

    async def run(
        self,
        operation: Callable[[int], Awaitable[T]],
        *,
        can_retry: Callable[[VoxlakeError], bool] | None = None,
        describe: str = "request",
    ) -> T:
        """Run ``operation(attempt)`` (attempt starts at 1) until it succeeds or must stop.

        ``can_retry`` vetoes a retry the policy would otherwise do (e.g. a non-idempotent POST
        whose request may already have been processed, or a non-replayable upload body).
        """
        attempt = 1
        while True:
            try:
                return await operation(attempt)
            except VoxlakeError as exc:
                exc.attempts = attempt
                if not self._should_retry(attempt, exc, can_retry):
                    raise
                delay = self.delay_for(attempt, exc)
                log.info(
                    "%s failed (%s, attempt %d/%d); retrying in %.2f s",
                    describe,
                    type(exc).__name__,
                    attempt,
                    self.max_attempts,
                    delay,
                )
                await self.sleep(delay)
                attempt += 1

    def _should_retry(
        self,
        attempt: int,
        exc: VoxlakeError,
        can_retry: Callable[[VoxlakeError], bool] | None,
    ) -> bool:
        if not exc.transient or attempt >= self.max_attempts:
            return False
        return can_retry is None or can_retry(exc)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: an integer/decimal or an HTTP date. ``None`` if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)
