"""Stage retries: which failures are retried, by Prefect's engine (the flow's tasks) and in
process (`voxlake run` without a Prefect API)."""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow, task
from prefect.states import Failed

from voxlake.errors import BadRequestError, ServerError, VoxlakeError
from voxlake.flows.transcribe import TASK_OPTIONS, TASK_RETRIES, retry_if_not_yet_retried
from voxlake.run.job import in_process


def _retried(exc: BaseException) -> bool:
    return retry_if_not_yet_retried(None, None, Failed(data=exc))  # type: ignore[arg-type]


def test_condition_follows_the_transient_mark_and_the_client_attempts() -> None:
    fresh = ServerError(503, "Service Unavailable", method="GET", path="/v2/transcript/x")
    assert _retried(fresh)  # transient and the client never retried it
    spent = ServerError(503, "Service Unavailable", method="GET", path="/v2/transcript/x")
    spent.attempts = 5
    assert not _retried(spent)  # the client already retried: retrying here would multiply
    assert not _retried(
        BadRequestError(400, "format_text must be a Boolean", method="POST", path="/v2/transcript")
    )
    assert _retried(OSError("disk hiccup"))
    assert not _retried(ValueError("a bug"))  # unexpected errors are not papered over


@pytest.mark.usefixtures("prefect_harness")
def test_prefect_calls_the_condition_and_retries_only_what_it_allows() -> None:
    calls: dict[str, int] = {"os": 0, "terminal": 0}

    @task(**{**TASK_OPTIONS, "retry_delay_seconds": 0})
    async def flaky_disk() -> str:
        calls["os"] += 1
        if calls["os"] == 1:
            raise OSError("transient filesystem error")
        return "ok"

    @task(**{**TASK_OPTIONS, "retry_delay_seconds": 0})
    async def terminal() -> str:
        calls["terminal"] += 1
        raise VoxlakeError("terminal by default")

    @flow
    async def both() -> tuple[str, bool]:
        first = await flaky_disk()
        state = await terminal(return_state=True)
        return first, state.is_failed()

    assert asyncio.run(both()) == ("ok", True)
    assert calls == {"os": 2, "terminal": 1}


class _Run:
    """Stands in for a TranscriptionRun: its upload fails with ``failures`` first."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def upload(self, media_ids: list[str]) -> list[str]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return media_ids


def test_in_process_stages_retry_what_the_flows_tasks_retry() -> None:
    """`voxlake run` without a Prefect API calls the stages itself, with the same retries."""
    upload = in_process(delays_s=(0.0, 0.0))["upload"]

    flaky = _Run(OSError("disk hiccup"), OSError("again"))
    assert asyncio.run(upload(flaky, ["a"])) == ["a"]  # type: ignore[arg-type]
    assert flaky.calls == 3

    broken = _Run(OSError("1"), OSError("2"), OSError("3"))
    with pytest.raises(OSError, match="3"):
        asyncio.run(upload(broken, ["a"]))  # type: ignore[arg-type]
    assert broken.calls == 1 + TASK_RETRIES

    spent = ServerError(503, "Service Unavailable", method="POST", path="/v2/upload")
    spent.attempts = 5
    for terminal in (spent, VoxlakeError("terminal by default"), ValueError("a bug")):
        once = _Run(terminal)
        with pytest.raises(type(terminal)):
            asyncio.run(upload(once, ["a"]))  # type: ignore[arg-type]
        assert once.calls == 1
