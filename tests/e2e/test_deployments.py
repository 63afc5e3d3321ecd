"""deployments/prefect.yaml against a real Prefect API: the pool, `prefect deploy --all`, and the
deployments read back through the API as written.

The API is the session's (``prefect_harness``, a real Prefect server process with its own SQLite
database) rather than a ``prefect server start`` of this test's own: deploying does not depend on
how the server was started, and a server's start-up is 10-30 s of a loaded suite. Nothing else in
the suite deploys; the checks below still look only at the `voxlake` pool's deployments.
`voxlake serve` against ``prefect server start`` deploys the same file in tests/e2e/test_serve.py
and
tests/e2e/test_backfill_e2e.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.prefect_server import clean_env, prefect_cli

REPO = Path(__file__).resolve().parents[2]
PREFECT_FILE = REPO / "deployments" / "prefect.yaml"
EDITED = "      manifest: /srv/media/incoming/\n      output: output/nightly"

pytestmark = pytest.mark.slow


def test_prefect_deploy_all_and_read_the_deployments_back(
    tmp_path: Path, prefect_harness: None
) -> None:
    from prefect.settings import PREFECT_API_URL

    api_url = str(PREFECT_API_URL.value())
    env = clean_env(tmp_path / "client-home", PREFECT_API_URL=api_url)
    written = {d["name"]: d for d in yaml.safe_load(PREFECT_FILE.read_text())["deployments"]}
    # docs/operations.md, "Start the nightly schedule": the two edits, then deploy again.
    edited = tmp_path / "prefect.yaml"
    text = PREFECT_FILE.read_text()
    text = text.replace("      manifest: data/\n      output: output/nightly", EDITED, 1)
    edited.write_text(text.replace("active: false", "active: true", 1))
    prefect_cli(env, "work-pool", "create", "voxlake", "--type", "process")
    prefect_cli(env, "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE))
    with httpx.Client(base_url=api_url, timeout=30) as api:
        in_pool = {"work_pools": {"name": {"any_": ["voxlake"]}}}
        found = api.post("/deployments/filter", json=in_pool).json()
        flows = {f["id"]: f["name"] for f in api.post("/flows/filter", json={}).json()}
        # Only the nightly: the test's time is the same edit's, not the other two's.
        prefect_cli(
            env,
            "--no-prompt",
            "deploy",
            "--name",
            "nightly",
            "--prefect-file",
            str(edited),
        )
        started = api.get("/deployments/name/transcribe-manifest/nightly").json()

    assert started["schedules"][0]["active"] is True
    assert started["parameters"]["manifest"] == "/srv/media/incoming/"

    deployed = {d["name"]: d for d in found}
    assert set(deployed) == {"nightly", "backfill", "shard"}
    assert {flows[d["flow_id"]] for d in found} == {"transcribe-manifest"}

    nightly = deployed["nightly"]
    (schedule,) = nightly["schedules"]
    assert schedule["schedule"]["cron"] == written["nightly"]["schedules"][0]["cron"]
    assert schedule["schedule"]["timezone"] == "Europe/Berlin"
    # Paused until the user points it at their media: no night bills the sample folder.
    assert schedule["active"] is False
    assert nightly["parameters"]["manifest"] == "data/"
    # The block `voxlake serve` saves (the key, or its embedded server when there is none).
    assert nightly["parameters"]["credentials_block"] == "assemblyai"
    assert deployed["backfill"]["parameters"]["credentials_block"] == "assemblyai"
    assert nightly["global_concurrency_limit"]["limit"] == 1
    assert nightly["concurrency_options"]["collision_strategy"] == "CANCEL_NEW"
    assert nightly["parameters"]["on_invalid"] == "skip"
    assert nightly["work_pool_name"] == "voxlake"
    # Every worker finds its own checkout (voxlake/steps.py), not the deploying machine's path.
    assert nightly["pull_steps"] == [{"voxlake.steps.set_project_directory": {}}]
    assert deployed["backfill"]["entrypoint"] == "flows/backfill.py:backfill"
    assert deployed["backfill"]["parameters"]["shards"] == 4
    # In-process arguments of the flow are no deployment parameters.
    shown = {name for d in found for name in d["parameter_openapi_schema"]["properties"]}
    assert "manifest" in shown and "credentials_block" in shown
    assert not shown & {"on_progress", "credentials", "job_ends"}
    # `prefect deploy` keeps the request model's constraints and help (voxlake/request.py).
    schema = nightly["parameter_openapi_schema"]["properties"]
    assert schema["max_uploads"]["minimum"] == 1
    assert schema["max_uploads"]["description"] == "Concurrent uploads."
