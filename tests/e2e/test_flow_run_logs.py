"""An item's failure reaches the flow run's logs in Prefect (what its UI shows), not only the
console of the process that ran the flow."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.support.clikit import REPO, ServeLocal, run_env, voxlake_run


@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_item_is_named_in_the_flow_runs_logs(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "source,media_id\n"
        f"{REPO / 'data/media/harvard-01.wav'},clip-ok\n"
        f"{REPO / 'data/media/too-short.wav'},clip-too-short\n"  # AssemblyAI's error at poll
    )
    output = tmp_path / "out"
    server = ServeLocal(tmp_path)
    try:
        done = voxlake_run(
            [str(manifest), "--output", str(output)],
            run_env(server, str(PREFECT_API_URL.value())),
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/2 completed, 1 failed" in done.stdout, done.stdout + done.stderr

    async def logs_of_the_run() -> list[tuple[int, str]]:
        async with get_client() as client:
            runs = await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=50)
            (run,) = [r for r in runs if r.parameters.get("output") == str(output)]
            logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
            )
        return [(log.level, log.message) for log in logs]

    logs = asyncio.run(logs_of_the_run())
    failures = [m for level, m in logs if level == logging.WARNING and "clip-too-short" in m]
    assert failures, logs
    assert "Audio duration is too short" in failures[0]
    assert not [m for _, m in logs if "clip-ok" in m and "failed" in m]
