"""The backfill parent judges a shard by its final state, read again if the first read lags.

Prefect's ``wait_for_flow_run`` returns the run as read right after its final-state *event*; on a
busy SQLite server that read was seen to return the state before it (B9, benchmarks/RESULTS.md:
a shard that had completed read as RUNNING, and the parent failed a backfill whose items had
all landed). Here, on the session's real Prefect API: a run read while Running, then completed.
"""

from __future__ import annotations

import asyncio

import pytest
from prefect import flow, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.states import Completed, Running

from voxlake.flows.backfill import settled

pytestmark = pytest.mark.usefixtures("prefect_harness")


@flow
def shard_stand_in() -> None:
    """Never run: its flow runs are made and moved through states by the test."""


async def _stale_read_then_completed() -> tuple[FlowRun, FlowRun]:
    async with get_client() as client:
        run = await client.create_flow_run(shard_stand_in, state=Running())
        stale = await client.read_flow_run(run.id)
        await client.set_flow_run_state(run.id, Completed(), force=True)
    return stale, await settled(stale)


def test_a_shard_read_before_its_final_state_landed_is_read_again_until_final() -> None:
    stale, read = asyncio.run(_stale_read_then_completed())
    assert stale.state is not None and stale.state.type.value == "RUNNING"
    assert read.id == stale.id
    assert read.state is not None and read.state.type.value == "COMPLETED"


def test_a_final_run_is_returned_as_it_is() -> None:
    async def completed() -> FlowRun:
        async with get_client() as client:
            run = await client.create_flow_run(shard_stand_in, state=Completed())
            return await client.read_flow_run(run.id)

    run = asyncio.run(completed())
    assert asyncio.run(settled(run)) is run
