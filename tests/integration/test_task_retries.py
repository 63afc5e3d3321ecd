"""Prefect task retries: which failures the tasks retry, checked through a real Prefect engine."""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow, task
from prefect.states import Failed

from voxlake.errors import BadRequestError, ServerError, VoxlakeError
from voxlake.flows.transcribe import TASK_OPTIONS, retry_if_not_yet_retried


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
