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
slots, and a process may spend up to two batches it took before the window began (it asks for
the next batch while half of the current one is left, so that requests do not wait on a Prefect
server that answers in seconds under load). So the account's sliding window holds when::

    LIMIT + 300 * DECAY_PER_S + 2 * BATCH * MAX_PROCESSES <= 20,000
    6,000 + 300 * 33    + 2 * 100 * 20       =  19,900

that is bursts of up to 6,000 requests and 9,900 per 5 minutes sustained (about half the
account), for up to 20 processes drawing on it at once. Prefect rounds decay down at every
write, and a denied attempt restarts the decay clock, so it can only grant fewer slots than
this, never more.

**Why a large bucket and large batches.** A run spends its requests in a burst: an upload and a
create per file as fast as they go, then one fetch per finished job. The sustained rate matters
less, because the account's concurrent-jobs limit binds first for real audio: 100 jobs of a few
minutes each finish a few per second, a few requests per file. With a bucket of a tenth of the
account (2,000 and 56/s), two concurrent runs of 1,000 short files spread their creates over a
minute and took 1.35 x the bound (B7 in benchmarks/RESULTS.md). In a burst a process spends
about one batch per ``rate_limit`` call, and a Prefect server taking two flow runs' task runs
and logs answers that call in 1-7 s: batches of 100 instead of 50 halve the calls a burst waits
on, for a bucket of 6,000 instead of 8,000 (still three times what two runs of 1,000 files send
in their first 20 s).

**Fallback.** Without a reachable Prefect API, or without the limit (``voxlake serve`` creates
it; ``prefect gcl create`` does too), a budget keeps to ``LOCAL_SHARE``: a quarter of the
account per window, never "unlimited", so four such processes together still fit.

**Another account limit.** ``VOXLAKE_ACCOUNT_RATE_LIMIT=REQUESTS/SECONDS`` (e.g. ``600/60`` for a
``voxlake serve-local --rate-limit 600 --rate-window 60``) replaces 20,000 / 300 s. The same
inequality then gives the figures (:func:`figures_for`): ``voxlake serve`` creates the limit with
them, and each flow run sizes its batch, local window and fallback share from them, so set it
alike for ``voxlake serve`` and every worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from voxlake.ratelimit import RequestBudget, SharedBudgetUnavailable
from voxlake.settings import ACCOUNT_ENV, Settings, settings

LIMIT_NAME = "assemblyai-requests"
ACCOUNT_REQUESTS = 20_000
WINDOW_S = 300.0
LIMIT = 6_000
DECAY_PER_S = 33.0
BATCH = 100
MAX_PROCESSES = 20
LOCAL_SHARE = ACCOUNT_REQUESTS // 4

assert LIMIT + WINDOW_S * DECAY_PER_S + 2 * BATCH * MAX_PROCESSES <= ACCOUNT_REQUESTS


@dataclass(frozen=True)
class BudgetFigures:
    """One account's rate limit and the shared limit's figures that keep under it."""

    account_requests: int
    window_s: float
    limit: int
    decay_per_s: float
    batch: int
    local_share: int

    def granted_per_window(self, processes: int = MAX_PROCESSES) -> float:
        """The most the account can see in one window: the bucket, its leak, held batches (two
        per process: the one being spent and the next, asked for ahead)."""
        return self.limit + self.window_s * self.decay_per_s + 2 * self.batch * processes


def figures_for(
    account_requests: int, window_s: float, max_processes: int = MAX_PROCESSES
) -> BudgetFigures:
    """Figures with ``limit + window * decay + 2 * batch * max_processes <= account_requests``.

    The bucket holds three tenths of the account (bursts); each process may hold two batches of
    up to 100, a fifth of the account for all processes together; decay takes the rest, rounded
    down. For 20,000 / 300 s this gives the documented 6,000, 33/s and 100.
    """
    if account_requests < 2 * max_processes or window_s <= 0:
        raise ValueError(
            f"an account limit of {account_requests} per {window_s:g} s is too small to share "
            f"among {max_processes} processes"
        )
    batch = max(1, min(BATCH, account_requests // (10 * max_processes)))
    limit = max(1, account_requests * 3 // 10)
    rest = (account_requests - limit - 2 * batch * max_processes) / window_s
    # Whole slots per second where possible (as documented); hundredths for tiny accounts.
    decay = float(math.floor(rest)) if rest >= 1 else math.floor(rest * 100) / 100
    if decay <= 0:
        raise ValueError(f"an account limit of {account_requests} per {window_s:g} s is too small")
    return BudgetFigures(
        account_requests, window_s, limit, decay, batch, max(1, account_requests // 4)
    )


def account_figures(source: Settings | Mapping[str, str] | None = None) -> BudgetFigures:
    """The figures for ``VOXLAKE_ACCOUNT_RATE_LIMIT`` (``REQUESTS/SECONDS``), else AssemblyAI's.

    ``source``: the settings read at the caller's edge, or an environment to read them from (a
    worker's); default: this process's.
    """
    if source is None:
        source = settings()
    elif not isinstance(source, Settings):
        source = Settings.from_env(source)
    limit = source.account_rate_limit
    if limit is None:
        return DEFAULT_FIGURES
    try:
        return figures_for(*limit)
    except ValueError as exc:
        raise ValueError(
            f"{ACCOUNT_ENV}={limit[0]}/{limit[1]:g}: expected REQUESTS/SECONDS, "
            f"e.g. 20000/300 ({exc})"
        ) from None


DEFAULT_FIGURES = figures_for(ACCOUNT_REQUESTS, WINDOW_S)
assert (DEFAULT_FIGURES.limit, DEFAULT_FIGURES.decay_per_s, DEFAULT_FIGURES.batch) == (
    LIMIT,
    DECAY_PER_S,
    BATCH,
)


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


def shared_request_budget(
    name: str = LIMIT_NAME, *, batch: int | None = None, figures: BudgetFigures | None = None
) -> RequestBudget:
    """A client budget that draws on the shared limit ``name`` (``AssemblyAIClient(budget=…)``).

    ``figures``: the account's (default: :func:`account_figures`, the environment's).
    """
    figures = figures or account_figures()
    return RequestBudget(
        figures.account_requests,
        figures.window_s,
        shared=PrefectSlots(name),
        batch=batch or figures.batch,
        fallback_requests=figures.local_share,
    )


async def ensure_shared_limit(
    name: str = LIMIT_NAME,
    *,
    limit: int | None = None,
    decay_per_s: float | None = None,
    figures: BudgetFigures | None = None,
) -> BudgetFigures:
    """Create the shared limit, or bring an existing one to these figures.

    ``figures`` default to :func:`account_figures` (``VOXLAKE_ACCOUNT_RATE_LIMIT``, else
    AssemblyAI's 20,000 / 300 s); ``limit`` and ``decay_per_s`` override single figures.
    Returns the figures the limit now has.
    """
    from prefect.client.orchestration import get_client

    figures = figures or account_figures()
    if limit is not None or decay_per_s is not None:
        figures = BudgetFigures(
            figures.account_requests,
            figures.window_s,
            figures.limit if limit is None else limit,
            figures.decay_per_s if decay_per_s is None else decay_per_s,
            figures.batch,
            figures.local_share,
        )
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(
            name, figures.limit, slot_decay_per_second=figures.decay_per_s
        )
    return figures
