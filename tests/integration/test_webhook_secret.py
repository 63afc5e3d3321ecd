"""A deployment's webhook secret: the flow parameter names a Prefect Secret block, never the value.

The flow runs in-process on the session Prefect API, where the Secret block is saved for real;
it submits to the suite's local server, which delivers each job's notification to a real
receiver (the one `voxlake serve --webhooks --webhook-collect` runs, on 127.0.0.1) that accepts
only the secret's value: a delivery counted means the value reached the job's
``webhook_auth_header_value``. The receiver's collector, given its endpoint only after the
notifications were recorded (as serve gives it once it has chosen the deployments' endpoint),
then collects the detached jobs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.clikit import wait_until
from tests.support.flowkit import run_flow, speech_clips, write_manifest
from tests.support.secrets import KEY_A, WEBHOOK_SECRET
from voxlake.credentials import AssemblyAICredentials
from voxlake.emulator import LocalServer
from voxlake.lake.read import read_table
from voxlake.serve_webhooks import RunningReceiver, ServeWebhooks
from voxlake.webhooks import pending_notifications

pytestmark = pytest.mark.usefixtures("prefect_harness")

HEADER = "X-Hook-Auth"


def test_the_webhook_secret_comes_from_the_secret_block_a_parameter_names(
    tmp_path: Path,
    local_server: LocalServer,
    api: Callable[[LocalServer], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client

    api(local_server)
    block = f"webhook-secret-{uuid.uuid4().hex[:8]}"
    Secret(value=WEBHOOK_SECRET).save(block)
    out = tmp_path / "out"
    monkeypatch.setenv("HOOK_AUTH", WEBHOOK_SECRET)  # the receiver's copy of the secret
    receiver = RunningReceiver(
        ServeWebhooks(
            str(out),
            port=0,
            auth_header_name=HEADER,
            auth_header_value_env="HOOK_AUTH",
            collect=True,
        )
    )
    receiver.start()
    try:
        before = local_server.stats()
        manifest = write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "media", 2))
        state, summary = run_flow(
            manifest=str(manifest),
            output=str(out),
            webhook_url=receiver.url,
            webhook_auth_header_name=HEADER,
            webhook_auth_header_value_secret=block,
            detach=True,  # submit and return: the notifications are what this test waits on
            report=False,
        )
        assert state.is_completed(), state
        assert summary.detached == 2, summary
        delivered = before["webhooks_delivered"] + 2
        local_server.wait_until(lambda s: s["webhooks_delivered"] >= delivered, timeout=60)
        assert local_server.stats()["webhooks_failed"] == before["webhooks_failed"]  # none refused
        assert len(pending_notifications(str(out))) == 2  # no endpoint yet: recorded only

        receiver.use(AssemblyAICredentials(api_key=KEY_A, base_url=local_server.base_url))

        def collected() -> bool:
            rows = (
                read_table(out, "transcripts").to_pylist() if (out / "transcripts").exists() else []
            )
            return len(rows) == 2 and not pending_notifications(str(out))

        wait_until(collected, "the receiver's collector to collect the detached jobs")
    finally:
        receiver.stop()
    routes = local_server.stats()["requests_by_route"]
    spent = {r: n - before["requests_by_route"].get(r, 0) for r, n in routes.items()}
    assert spent["transcript_create"] == 2 and spent["transcript_get"] == 2, spent

    async def parameters() -> dict[str, object]:
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
        return dict(run.parameters)

    recorded = asyncio.run(parameters())
    assert recorded["webhook_auth_header_value_secret"] == block
    assert WEBHOOK_SECRET not in json.dumps(recorded, default=str)  # the name, never the value


def test_a_secret_block_that_does_not_exist_fails_the_run_before_any_request(
    tmp_path: Path, local_server: LocalServer, api: Callable[[LocalServer], None]
) -> None:
    api(local_server)
    manifest = write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "media", 1))
    before = local_server.stats()["requests_by_route"]
    state, error = _failed_run(
        manifest=str(manifest),
        output=str(tmp_path / "out"),
        webhook_url="http://127.0.0.1:9/voxlake/webhook",
        webhook_auth_header_value_secret="no-such-secret-block",
    )
    assert state.is_failed()
    assert "no Secret block named 'no-such-secret-block'" in str(error)
    assert local_server.stats()["requests_by_route"] == before  # nothing sent


def _failed_run(**params: object) -> tuple[object, object]:
    from voxlake.flows.transcribe import transcribe_manifest

    state = asyncio.run(transcribe_manifest(**params, return_state=True))  # type: ignore[arg-type]
    return state, state.result(raise_on_failure=False)
