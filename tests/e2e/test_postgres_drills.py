"""Failure drills on PostgreSQL, every part a real process: a worker killed mid-shard, the
Prefect server killed and restarted mid-backfill, and a worker on another "machine" (another
checkout, another ``PREFECT_HOME``) (docs/operations.md, "Failure drills").

``voxlake serve --database postgresql --no-worker`` (the real CLI) starts a PostgreSQL with its
files in the test's ``.voxlake/postgres``, a Prefect server on it, and sets up the pool, the
shared limit, the block and the deployments; ``voxlake serve-local`` (scripted engine, fast
jobs) stands in for AssemblyAI and counts what was really submitted. The workers are
``prefect worker start`` processes, the backfills ``prefect deployment run``. The server has
basic auth on (``PREFECT_SERVER_API_AUTH_STRING``), as one that workers elsewhere reach must:
every client here sends ``PREFECT_API_AUTH_STRING``.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.test_backfill_e2e import REPO, Api, make_media, run_deployment, worker
from tests.support.clikit import LOCAL_KEY, ServeLocal, wait_until
from tests.support.prefect_server import clean_env, free_port, postgres_or_skip
from voxlake.lake.read import read_current
from voxlake.serve import (
    CLIENT_AUTH_ENV,
    DATABASE_URL_ENV,
    SERVER_AUTH_ENV,
    ServeError,
    server_database,
)

# One shard: each flow-run process costs 10-30 s of start-up on the loaded 2-core machine, and a
# second shard would only repeat what the first shows.
ITEMS, SHARDS = 6, 1
DEADLINE_S = 240.0  # bounds a broken run on the loaded machine; nothing is asserted on time

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


class PgServe:
    """``voxlake serve --database postgresql --no-worker`` in ``root``, restartable on the same
    ``.voxlake`` (Prefect's home and PostgreSQL's data) and port."""

    def __init__(self, root: Path, local: ServeLocal) -> None:
        self.root, self.port = root, free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.auth = ("voxlake", secrets.token_urlsafe(16))
        self.auth_string = ":".join(self.auth)
        self.env = clean_env(
            root / "client-home",
            PREFECT_UI_ENABLED="false",
            ASSEMBLYAI_API_KEY=LOCAL_KEY,
            ASSEMBLYAI_BASE_URL=local.base_url,
            **{SERVER_AUTH_ENV: self.auth_string},
        )
        # Workers need no key (the block holds it), only the client's side of the auth.
        self.worker_env = {
            k: v for k, v in self.env.items() if not k.startswith(("ASSEMBLYAI_", SERVER_AUTH_ENV))
        }
        self.worker_env |= {"PREFECT_API_URL": self.api_url, "PREFECT_WORKER_QUERY_SECONDS": "2"}
        self.worker_env[CLIENT_AUTH_ENV] = self.auth_string
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.root / f"serve-{self.starts}.log"
        cmd = [sys.executable, "-m", "voxlake.cli", "serve", "--database", "postgresql"]
        cmd += ["--no-worker", "--port", str(self.port), "--home", ".voxlake/prefect"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                cmd, env=self.env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT
            )

        def ready() -> bool:
            assert self.process is not None and self.process.poll() is None, log.read_text()
            return "Ctrl-C stops" in log.read_text()

        wait_until(ready, "voxlake serve --database postgresql set up", DEADLINE_S, every_s=0.5)

    def log(self) -> str:
        return "".join(p.read_text() for p in sorted(self.root.glob("serve-*.log")))

    def api(self) -> Api:
        api = Api(self.api_url)
        api.http.auth = self.auth
        return api

    def prefect_server(self) -> psutil.Process:
        assert self.process is not None
        for child in psutil.Process(self.process.pid).children(recursive=True):
            command = " ".join(child.cmdline())
            # The server itself, not its watchdog (python -m voxlake.lifeline python -m prefect…)
            if "prefect server start" in command and "voxlake.lifeline" not in command:
                return child
        raise AssertionError(f"no Prefect server under voxlake serve:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeLocal]:
    server = ServeLocal(tmp_path_factory.mktemp("serve-local"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, local: ServeLocal) -> Iterator[PgServe]:
    postgres_or_skip()
    serve = PgServe(tmp_path_factory.mktemp("pg-serve"), local)
    try:
        serve.start()
        yield serve
    finally:
        serve.stop()


def _stopped(worker: subprocess.Popen[bytes]) -> psutil.Process | None:
    """The flow-run process of ``worker`` that a crash point stopped (SIGSTOP), if any."""
    for process in psutil.Process(worker.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a process that ended since the listing
            if process.status() == psutil.STATUS_STOPPED:
                return process
    return None


def _kill_family(root: psutil.Process) -> None:
    """``kill -9`` of ``root`` and everything under it (a worker and its flow-run processes)."""
    family = [root]
    with contextlib.suppress(psutil.Error):
        family += root.children(recursive=True)
    for process in family:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGKILL)


def _worker_refused(
    env: dict[str, str], cwd: Path, log: Path, auth: str | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """``prefect worker start`` with ``auth`` as its auth string (None: none), started."""
    env = env | ({CLIENT_AUTH_ENV: auth} if auth else {})
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "voxlake"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    return process, log


def _each_item_once_completed(out: Path, n: int) -> None:
    view = read_current(out).select(["media_id", "status"]).to_pylist()
    assert sorted(r["media_id"] for r in view) == [f"clip-{i:03d}.wav" for i in range(n)]
    assert {r["status"] for r in view} == {"completed"}, view


def test_serve_database_postgresql_refuses_a_configured_api_and_a_non_postgresql_url(
    tmp_path: Path,
) -> None:
    """Checks that stop before any server starts (the PostgreSQL tests below start them)."""
    voxlake = [sys.executable, "-m", "voxlake.cli", "serve", "--database", "postgresql"]
    done = subprocess.run(
        voxlake,
        env=clean_env(tmp_path / "home", PREFECT_API_URL="http://127.0.0.1:9/api"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--database postgresql is for the Prefect server that voxlake serve starts" in (
        done.stderr
    )
    assert not (tmp_path / ".voxlake").exists()  # nothing was started

    sqlite_url = "sqlite+aiosqlite:///elsewhere.db"
    pg_url = "postgresql+asyncpg://someone:s3cret@db.example:5432/prefect"
    started: list[subprocess.Popen[bytes]] = []
    with pytest.raises(ServeError, match="names another database"):
        server_database("postgresql", tmp_path, {DATABASE_URL_ENV: sqlite_url}, started, {})
    url, where = server_database("postgresql", tmp_path, {DATABASE_URL_ENV: pg_url}, started, {})
    assert url == pg_url and "s3cret" not in where and started == []  # used, nothing started
    assert server_database("sqlite", tmp_path, {}, started, {}) == (None, f"in {tmp_path}")


def test_serve_on_postgresql_runs_prefect_on_the_postgres_it_started(served: PgServe) -> None:
    log = served.log()
    data = served.root / ".voxlake" / "postgres"
    assert f"its database is PostgreSQL in {data}" in log, log
    assert (data / "data" / "PG_VERSION").is_file()
    password = (data / "password").read_text().strip()
    assert password not in log  # the URL is shown without it
    assert oct((data / "password").stat().st_mode & 0o777) == "0o600"
    # Prefect's tables are in it: the deployments that serve created.
    postgres = [p for p in psutil.Process(served.process.pid).children(recursive=True)  # type: ignore[union-attr]
                if p.name() == "postgres" and "-D" in p.cmdline()]  # fmt: skip
    assert postgres, "no postgres under voxlake serve"
    assert served.auth_string not in log  # a secret: serve's printed commands name the variable
    url = f"{served.api_url}/deployments/filter"
    assert httpx.post(url, json={}, timeout=60).status_code == 401  # auth is on
    deployments = httpx.post(url, json={}, auth=served.auth, timeout=60).json()
    assert {d["name"] for d in deployments} >= {"backfill", "shard", "nightly"}


def test_a_worker_killed_mid_shard_the_next_backfill_finishes_paying_nothing_twice(
    served: PgServe, local: ServeLocal, tmp_path: Path
) -> None:
    media, out = tmp_path / "media", tmp_path / "lake"
    make_media(media, ITEMS)
    api = served.api()
    params = {"manifest": str(media), "output": str(out), "shards": SHARDS, "chunk_size": 2}
    paid_before = local.submissions()
    # Worker A's shard stops itself (SIGSTOP) right after its second job was created, before
    # the ledger knows that job's id (the hardest moment: the next run must find it by its
    # upload URL instead of paying again); creates already in flight may land too. Then
    # worker A and its flow-run processes get kill -9.
    hooks = {"VOXLAKE_TEST_HOOKS": "1", "VOXLAKE_CRASHPOINT": "after_submit:2"}
    with worker(served.worker_env | hooks, "drill-a", tmp_path / "worker-a.log") as a:
        first = run_deployment(served.worker_env, "transcribe-manifest/backfill", params)

        wait_until(lambda: _stopped(a), "worker A's shard to stop mid-shard", DEADLINE_S, 0.2)
        _kill_family(psutil.Process(a.pid))
        a.wait()
    paid_at_kill = local.submissions() - paid_before
    # At least one job paid for; how many more depends on which creates were already in
    # flight (the chunks submit concurrently) when the shard stopped.
    assert paid_at_kill >= 1, "the kill came before anything was paid: not mid-shard"
    killed = [r for r in api.flow_runs() if r["parent_task_run_id"] or r["id"] == first]

    # The next backfill over the same manifest and output, on another worker.
    with worker(served.worker_env, "drill-b", tmp_path / "worker-b.log"):
        second = run_deployment(served.worker_env, "transcribe-manifest/backfill", params)
        api.wait_final(second, [tmp_path / "worker-a.log", tmp_path / "worker-b.log"])

    _each_item_once_completed(out, ITEMS)
    assert local.submissions() - paid_before == ITEMS, "a job was submitted twice"
    # Prefect neither rescheduled nor crashed the killed runs (no zombie detection by
    # default): they stay Running; the second backfill is what finished the shard.
    states = {r["name"]: api.flow_run(r["id"])["state"]["type"] for r in killed}
    assert "RUNNING" in states.values(), states


def test_the_prefect_server_killed_and_restarted_mid_backfill_loses_and_repays_nothing(
    served: PgServe, local: ServeLocal, tmp_path: Path
) -> None:
    """``kill -9`` of the Prefect server while a shard is in the middle of its items (held
    there by a test hook), then ``voxlake serve`` started again on the same ``.voxlake``: the
    shard goes on, and the backfill ends completed, at once or when run again."""
    media, out = tmp_path / "media", tmp_path / "lake"
    make_media(media, ITEMS)
    api = served.api()
    params = {"manifest": str(media), "output": str(out), "shards": SHARDS, "chunk_size": 2}
    paid_before = local.submissions()
    hooks = {"VOXLAKE_TEST_HOOKS": "1", "VOXLAKE_CRASHPOINT": "after_submit:2"}
    logs = [tmp_path / "worker-c.log", tmp_path / "worker-d.log"]
    with worker(served.worker_env | hooks, "drill-c", logs[0]) as c:
        first = run_deployment(served.worker_env, "transcribe-manifest/backfill", params)

        shard = wait_until(lambda: _stopped(c), "the shard to stop mid-shard", DEADLINE_S, 0.2)
        paid_at_kill = local.submissions() - paid_before
        assert paid_at_kill >= 1, "the kill came before anything was paid: not mid-shard"
        served.prefect_server().send_signal(signal.SIGKILL)
        assert served.process is not None
        served.process.wait(timeout=120)  # serve stops the rest (PostgreSQL) and exits
        assert "the Prefect server exited" in served.log(), served.log()
        served.start()  # the same .voxlake: the same PostgreSQL database, the same port
        shard.send_signal(signal.SIGCONT)

        def flow_runs_done() -> bool:
            return c.poll() is not None or not psutil.Process(c.pid).children(recursive=True)

        wait_until(flow_runs_done, "worker C's flow runs to end", DEADLINE_S, 0.5)
    continued = api.flow_run(first)["state"]["type"] == "COMPLETED"
    if not continued:  # the operator's move: the same backfill again (docs/operations.md)
        with worker(served.worker_env, "drill-d", logs[1]):
            again = run_deployment(served.worker_env, "transcribe-manifest/backfill", params)
            api.wait_final(again, logs)
    print(f"the backfill {'continued' if continued else 'was run again'} after the restart")

    _each_item_once_completed(out, ITEMS)
    assert local.submissions() - paid_before == ITEMS, "a job was submitted twice"


def test_a_worker_on_another_checkout_with_its_own_prefect_home_takes_the_shards(
    served: PgServe, local: ServeLocal, tmp_path: Path
) -> None:
    """The other "machine": a ``git clone --local`` of this repository at HEAD (committed files
    only), its own ``PREFECT_HOME``, its own working folder, and only the server's address and
    auth string. It runs on this interpreter with ``PYTHONPATH`` at the clone (a new virtual
    environment per test would cost minutes): ``import voxlake`` is the clone's, as on a
    machine where ``uv sync`` installed the clone. No ``VOXLAKE_HOME``: the pull step
    ``voxlake.steps.set_project_directory`` finds the checkout from where the imported package
    lives. The proof that the flow runs ran the clone's code in the clone: the backfill's
    ``manifest`` and ``output`` are relative, and a relative path resolves in the checkout that
    the pull step changed to, so the items are found and land in the clone, and nothing lands in
    this checkout. The remote worker is the only one, so it runs the backfill and both shards
    (its log names each run it submitted)."""
    clone = tmp_path / "other-checkout"
    cloned = subprocess.run(
        ["git", "clone", "--local", "--quiet", str(REPO), str(clone)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cloned.returncode == 0, cloned.stderr
    remote_env = clean_env(
        tmp_path / "other-prefect-home",
        PREFECT_API_URL=served.api_url,
        PREFECT_WORKER_QUERY_SECONDS="2",
        PYTHONPATH=str(clone),
    )
    remote_env.pop("VOXLAKE_HOME", None)
    items, shards = 6, 2
    media, output = "drill-media", f"output/remote-drill-{uuid.uuid4().hex[:8]}"
    make_media(clone / media, items)
    params = {"manifest": f"{media}/", "output": output, "shards": shards, "chunk_size": 2}
    api = served.api()
    paid_before = local.submissions()
    remote_log = tmp_path / "remote-worker.log"
    refused: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        with worker(
            remote_env | {CLIENT_AUTH_ENV: served.auth_string}, "remote-machine", remote_log, clone
        ):
            parent = run_deployment(served.worker_env, "transcribe-manifest/backfill", params)
            # Meanwhile: without the auth string, or with a wrong one, a worker is refused.
            refused += [_worker_refused(remote_env, clone, tmp_path / "no-auth.log")]
            refused += [_worker_refused(remote_env, clone, tmp_path / "wrong-auth.log", "u:x")]
            api.wait_final(parent, [remote_log])
    finally:
        for process, _ in refused:  # they exit by themselves; a worker let in would not
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for process, log in refused:
        said = " ".join(log.read_text().split())  # Rich wraps its lines
        assert process.returncode != 0 and "401 Unauthorized" in said, f"{log.name}: {said}"

    children = {"flow_runs": {"parent_flow_run_id": {"any_": [parent]}}}
    shard_runs = api.http.post("/flow_runs/filter", json=children).raise_for_status().json()
    assert len(shard_runs) == shards, shard_runs
    said = remote_log.read_text()
    for run_id in [parent, *(r["id"] for r in shard_runs)]:
        assert f"Worker 'remote-machine' submitting flow run '{run_id}'" in said, said[-4000:]
    assert served.auth_string not in said
    _each_item_once_completed(clone / output, items)
    assert not (REPO / output).exists(), "a flow run ran in this checkout, not the other one"
    assert local.submissions() - paid_before == items, "a job was submitted twice"
