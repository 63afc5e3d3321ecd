"""A real backfill end to end: Prefect server, deployments, two workers, a rate-limited account.

Every part is the real thing, each as its own process: ``prefect server start`` on a PostgreSQL
(the one ``voxlake serve --database postgresql`` runs, :mod:`voxlake.postgres`), as
docs/operations.md recommends for several shards and workers; ``voxlake serve --no-worker``
against it (the work pool, the shared request limit, the block
types and ``prefect deploy --all`` of deployments/prefect.yaml); two ``prefect worker start
--pool voxlake``; and ``voxlake serve-local`` allowing only 600 requests per 10 s, fewer than the
backfill needs, so the four shards on two workers must share the account's budget through the
Prefect limit (``VOXLAKE_ACCOUNT_RATE_LIMIT=600/10`` sizes it). A 10-s window rather than the
issue's example of 60 s: the same shortfall (the burst is the same 180 requests, the rest comes
at 30 rather than 10 per second), and the budget-bound part of the test takes a third of what it
took at 30 s (it was about 60 s of a loaded run's 214 s). The account is not made smaller instead:
below 600 requests a batch of the shared budget is one slot (``shared_budget.figures_for``), so
every request would be one call to the loaded test server (tried at 200/10 s: one shard waited
87 s for a slot). The AssemblyAI key reaches the flow runs only through an
``AssemblyAICredentials`` block, as deployments are meant to be used: the workers' environment has
no ``ASSEMBLYAI_*`` variable.

The backfill of 200 items in 4 shards starts with ``prefect deployment run``, as an operator
would. Then the nightly deployment runs twice over the same folder and output root.

Not SQLite, which the other server tests use: under this load (four shards on two workers, the
shared budget's ``rate_limit`` calls, events) Prefect 3.8's SQLite server stalled for about 60 s
at a time, its hard-coded ``PRAGMA busy_timeout = 60000`` (PrefectHQ/prefect#10188, #16299): the
test took 106-130 s in good runs and up to 292 s. The server is still started here rather than by
``voxlake serve --database postgresql``, so ``voxlake serve --no-worker`` is tested against a
server already running, as before; the PostgreSQL's start (``initdb``, a few seconds) replaces
the copy of the session's migrated SQLite template, which PostgreSQL cannot use.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.clikit import ServeLocal, wait_until
from tests.support.prefect_server import (
    RunningServer,
    prefect_api,
    prefect_cli,
    prefect_server,
    private_postgres,
)
from tests.support.secrets import KEY_A
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.read import read_current
from voxlake.settings import ACCOUNT_ENV
from voxlake.shared_budget import LIMIT_NAME, figures_for

REPO = Path(__file__).resolve().parents[2]
ITEMS, SHARDS, NEW_FOR_NIGHTLY = 200, 4, 10
RATE, WINDOW_S = 600, 10
BLOCK = "e2e-serve-local"
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
# The machine is shared and loaded: deadlines are generous, and only bound how long a broken
# run can hang; nothing is asserted about time.
DEADLINE_S = 600.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def make_media(folder: Path, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        write_synth_wav(folder / f"clip-{i:03d}.wav", None, 0.5, sample_rate=8000, seed=i)


def run_deployment(env: dict[str, str], name: str, params: dict[str, Any]) -> str:
    """``prefect deployment run NAME --params …``; the new flow run's id."""
    out = prefect_cli(env, "deployment", "run", name, "--params", json.dumps(params))
    found = re.search(r"UUID: ([0-9a-f-]{36})", out)
    assert found, out
    return found.group(1)


class Api:
    def __init__(self, url: str) -> None:
        self.http = prefect_api(url)

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self.http.get(f"/flow_runs/{run_id}").raise_for_status().json()

    def wait_final(self, run_id: str, logs: list[Path]) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            try:
                run = self.flow_run(run_id)
            except httpx.TransportError:
                return None  # a loaded server answering slowly: ask again, within the deadline
            return run if run["state"]["type"] in FINAL else None

        run = wait_until(final, f"flow run {run_id} to finish", DEADLINE_S, every_s=1.0)
        if run["state"]["type"] != "COMPLETED":
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in logs)
            raise AssertionError(f"flow run {run['name']}: {run['state']}\n{tails}")
        return run

    def flow_runs(self) -> list[dict[str, Any]]:
        return self.http.post("/flow_runs/filter", json={"limit": 200}).raise_for_status().json()

    def artifact(self, run_id: str, key: str) -> str:
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}}
        found = self.http.post("/artifacts/filter", json=body).raise_for_status().json()
        # Prefect's client re-sends a POST the loaded server was slow to answer, which can store
        # the same artifact twice; two *different* ones would be a bug.
        contents = {str(artifact["data"]) for artifact in found}
        assert len(contents) == 1, f"{len(found)} artifacts {key!r} of run {run_id}: {contents}"
        return contents.pop()

    def everything_recorded(self) -> str:
        """Every log line, artifact and flow-run parameter the server holds, as text."""
        logs: list[dict[str, Any]] = []
        while True:
            body = {"limit": 200, "offset": len(logs)}
            page = self.http.post("/logs/filter", json=body).raise_for_status().json()
            logs += page
            if len(page) < 200:
                break
        artifacts = self.http.post("/artifacts/filter", json={}).raise_for_status().json()
        params = [run["parameters"] for run in self.flow_runs()]
        return json.dumps([logs, artifacts, params])


@contextlib.contextmanager
def worker(
    env: dict[str, str], name: str, log: Path, cwd: Path = REPO
) -> Iterator[subprocess.Popen[bytes]]:
    """``prefect worker start`` in its own session, in ``cwd``; on exit it and every flow-run
    process it started are killed (a process worker's flow runs are its descendants).

    Killed, not interrupted: a process worker that has run flows does not finish its shutdown
    on SIGINT (Prefect 3.8; measured: still running 30 s later, every time), so a graceful stop
    cost the test 30 s per worker, and nothing here is about how a worker stops."""
    # --limit 3: the parent and two shards at most, so the other worker gets shards too.
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "voxlake"]
    cmd += ["--name", name, "--limit", "3"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        family: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()
        proc.wait()


def test_a_sharded_backfill_and_nightly_runs_through_deployments_and_two_workers(
    tmp_path: Path,
) -> None:
    media, out = tmp_path / "media", tmp_path / "lake"
    with private_postgres(tmp_path / "postgres") as database_url:
        make_media(media, ITEMS)
        local = ServeLocal(
            tmp_path, "--api-key", KEY_A, "--rate-limit", str(RATE), "--rate-window", str(WINDOW_S)
        )
        try:
            # The scheduler every 5 s instead of 60 s: it must create the nightly's cron runs.
            with prefect_server(
                tmp_path,
                database_url=database_url,
                PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
            ) as server:
                _scenario(server, local, media, out, tmp_path)
        finally:
            local.stop()


def _scenario(server: RunningServer, local: ServeLocal, media: Path, out: Path, tmp: Path) -> None:
    env = {**server.env, ACCOUNT_ENV: f"{RATE}/{WINDOW_S}", "PREFECT_WORKER_QUERY_SECONDS": "1"}
    api = Api(server.api_url)

    # What `make serve` sets up, against the server already running: pool, limit, blocks, deploy.
    # With a key (this test's local server's), so it starts no embedded server and returns.
    serve = subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "serve", "--no-worker"],
        env={**env, "ASSEMBLYAI_API_KEY": KEY_A, "ASSEMBLYAI_BASE_URL": local.base_url},
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert serve.returncode == 0, serve.stdout + serve.stderr
    assert f"AssemblyAI endpoint: {local.base_url}, with the key in" in serve.stdout
    limit = api.http.get(f"/v2/concurrency_limits/{LIMIT_NAME}").raise_for_status().json()
    expected = figures_for(RATE, WINDOW_S)
    assert (limit["limit"], limit["slot_decay_per_second"]) == (
        expected.limit,
        expected.decay_per_s,
    )

    logs = [tmp / "worker-a.log", tmp / "worker-b.log"]
    with worker(env, "e2e-worker-a", logs[0]), worker(env, "e2e-worker-b", logs[1]):
        # The workers were started first: their start-up (a Python process importing Prefect,
        # seconds on a loaded machine) overlaps the schedule and block set-up. The nightly's
        # scheduled runs are hours away (cron), beyond what a worker fetches ahead.

        # The cron schedule really produces runs (the server's scheduler inserts them; it could
        # not with SQLAlchemy 2.1, which is why pyproject.toml pins < 2.1).
        deployment = api.http.get("/deployments/name/transcribe-manifest/nightly").json()
        nightly_id = deployment["id"]
        (schedule,) = deployment["schedules"]
        assert not schedule["active"]  # paused as shipped; started here as a user would
        url = f"/deployments/{nightly_id}/schedules/{schedule['id']}"
        api.http.patch(url, json={"active": True}).raise_for_status()
        scheduled = {"deployments": {"id": {"any_": [nightly_id]}}}
        scheduled["flow_runs"] = {"state": {"type": {"any_": ["SCHEDULED"]}}}
        # Waited for once the backfill has started: the scheduler's loop (5 s) overlaps it.

        # The key lives in a block; flow runs get only its name.
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from voxlake.credentials import AssemblyAICredentials

        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            AssemblyAICredentials(api_key=KEY_A, base_url=local.base_url).save(BLOCK)

        parent_id = run_deployment(
            env,
            "transcribe-manifest/backfill",
            {
                "manifest": str(media),
                "output": str(out),
                "shards": SHARDS,
                "credentials_block": BLOCK,
                # Fewer, larger chunks than a 50-item run picks by itself: fewer task runs for
                # the loaded test machine's Prefect server to record.
                "chunk_size": 10,
            },
        )
        wait_until(
            lambda: api.http.post("/flow_runs/count", json=scheduled).json(),
            "the scheduler to create the nightly's scheduled runs",
            DEADLINE_S,
            every_s=1.0,
        )
        parent = api.wait_final(parent_id, logs)

        # Every item once in the current view, all completed.
        view = read_current(out).select(["media_id", "status"]).to_pylist()
        assert sorted(r["media_id"] for r in view) == [f"clip-{i:03d}.wav" for i in range(ITEMS)]
        assert {r["status"] for r in view} == {"completed"}

        # Four shard runs, each COMPLETED, spread over both workers.
        shards = [r for r in api.flow_runs() if r["name"].startswith("backfill-shard-")]
        assert len(shards) == SHARDS
        assert {r["state"]["type"] for r in shards} == {"COMPLETED"}
        # Both workers may log "submitting" a run; the server lets one of them have it (the
        # other's Pending is aborted), and only that one starts its process.
        worker_logs = {p.stem: p.read_text() for p in logs}
        started = "Flow run '{}' submitted to infrastructure"
        ran_by = {
            r["name"]: [n for n, text in worker_logs.items() if started.format(r["name"]) in text]
            for r in shards
        }
        assert all(len(names) == 1 for names in ran_by.values()), ran_by
        assert {names[0] for names in ran_by.values()} == {"worker-a", "worker-b"}, ran_by

        # The budget mattered (more requests than one window allows) and held: no 429 at all.
        stats = local.stats()
        assert sum(stats["requests_by_route"].values()) > RATE, stats
        assert "429" not in stats["requests_by_status"], stats
        assert stats["rate_limited"] == 0, stats
        assert local.submissions() == ITEMS
        # Every shard drew on the shared limit: none fell back to a local share.
        assert not any("shared request budget unavailable" in t for t in worker_logs.values())

        # The parent's artifact aggregates the shards.
        summary = api.artifact(parent_id, "voxlake-backfill-summary")
        assert f"| **total** | | | {ITEMS} | {ITEMS} | 0 |" in summary, summary
        for shard in shards:
            assert shard["id"] in summary
        assert parent["state"]["type"] == "COMPLETED"

        # Nightly over the same folder and root: only the new files, then nothing at all.
        make_media(media, NEW_FOR_NIGHTLY, start=ITEMS)
        nightly = {"manifest": str(media), "output": str(out), "credentials_block": BLOCK}
        paid = [local.submissions()]
        for _ in range(2):
            run_id = run_deployment(env, "transcribe-manifest/nightly", nightly)
            api.wait_final(run_id, logs)
            paid.append(local.submissions())
        last = api.artifact(run_id, "voxlake-run-summary")
        assert paid == [ITEMS, ITEMS + NEW_FOR_NIGHTLY, ITEMS + NEW_FOR_NIGHTLY]
        assert "| new | 0 |" in last, last
        assert f"| skipped as already done | {ITEMS + NEW_FOR_NIGHTLY} |" in last, last
        assert len(read_current(out)) == ITEMS + NEW_FOR_NIGHTLY

        # The key never reached a parameter, a log line, an artifact or a worker's output.
        recorded = api.everything_recorded() + "".join(p.read_text() for p in logs)
        assert KEY_A not in recorded
        assert local.stats()["requests_by_status"].get("429") is None
