"""AssemblyAI's request budget shared by every flow run and worker, through Prefect.

AssemblyAI allows 20,000 requests per 5 minutes per *account*. Each client's
:class:`~voxlake.ratelimit.RequestBudget` only counts its own process, so two concurrent runs
(a nightly run and a backfill, or shards on two workers) would each spend the whole budget.
Here the processes share one Prefect global concurrency limit in rate-limit mode: slots decay
at ``slot_decay_per_second``, and a process takes ``BATCH`` slots per
:func:`prefect.concurrency.asyncio.rate_limit` call (one call is one database write, ~10 per
second per process here, so one slot per request would cap a process near 10 requests/s).

**Limit and decay.** Prefect's rate limit is a leaky bucket: at most ``limit`` slots at once,
leaking ``decay`` per second. In any 300 s window it grants at most ``limit + 300 * decay``
slots, and a process may spend up to ``BATCH`` slots it took before the window began. So the
account's sliding window holds when::

    LIMIT + 300 * DECAY_PER_S + BATCH * MAX_PROCESSES <= 20,000
    2,000 + 300 * 56    + 50 * 20        =  19,800

that is bursts of up to 2,000 requests and 16,800 per 5 minutes sustained (84 % of the
account), for up to 20 processes drawing on it at once. Prefect rounds decay down at every
write, and a denied attempt restarts the decay clock, so it can only grant fewer slots than
this, never more.

**Fallback.** Without a reachable Prefect API, or without the limit (``voxlake serve`` creates
it; ``prefect gcl create`` does too), a budget keeps to ``LOCAL_SHARE``: a quarter of the
account per window, never "unlimited", so four such processes together still fit.
"""

from __future__ import annotations

from voxlake.ratelimit import RequestBudget, SharedBudgetUnavailable

LIMIT_NAME = "assemblyai-requests"
ACCOUNT_REQUESTS = 20_000
WINDOW_S = 300.0
LIMIT = 2_000
DECAY_PER_S = 56.0
BATCH = 50
MAX_PROCESSES = 20
LOCAL_SHARE = ACCOUNT_REQUESTS // 4

assert LIMIT + WINDOW_S * DECAY_PER_S + BATCH * MAX_PROCESSES <= ACCOUNT_REQUESTS


class PrefectSlots:
    """A :class:`~voxlake.ratelimit.SlotSource` backed by a Prefect global concurrency limit."""

    def __init__(self, name: str = LIMIT_NAME) -> None:
        self.name = name

    async def take(self, n: int) -> None:
        from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError, rate_limit
        from prefect.settings import get_current_settings

        # Without an API, Prefect would start a temporary server with an empty database.
        if get_current_settings().api.url is None:
            raise SharedBudgetUnavailable("no Prefect API configured")
        try:
            # strict: a missing limit raises instead of limiting nothing.
            await rate_limit(self.name, occupy=n, strict=True)
        except ConcurrencySlotAcquisitionError as exc:
            raise SharedBudgetUnavailable(str(exc)) from exc

    def __repr__(self) -> str:
        return f"PrefectSlots({self.name!r})"


def shared_request_budget(name: str = LIMIT_NAME, *, batch: int = BATCH) -> RequestBudget:
    """A client budget that draws on the shared limit ``name`` (``AssemblyAIClient(budget=…)``)."""
    return RequestBudget(
        ACCOUNT_REQUESTS,
        WINDOW_S,
        shared=PrefectSlots(name),
        batch=batch,
        fallback_requests=LOCAL_SHARE,
    )


async def ensure_shared_limit(
    name: str = LIMIT_NAME, *, limit: int = LIMIT, decay_per_s: float = DECAY_PER_S
) -> None:
    """Create the shared limit, or bring an existing one to these figures."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(
            name, limit, slot_decay_per_second=decay_per_s
        )
