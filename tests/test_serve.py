"""`voxlake serve` on real parts: Prefect's basic auth, the refusal to open a door without it,
and the whole one-machine setup running a deployment through its worker."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from tests.flowkit import speech_clips, write_manifest
from tests.prefect_server import clean_env, free_port, prefect_server
from tests.secrets import KEY_A
from voxlake.emulator import LocalServer
from voxlake.serve import SERVER_AUTH_ENV, ServeError, check_bind

REPO = Path(__file__).resolve().parents[1]
AUTH = "voxlake-test:Wd8pQz3rT6yL"
DEADLINE_S = 240.0

pytestmark = pytest.mark.slow


def _wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S:g} s: {what}"
        time.sleep(0.2)  # polling other processes' state, bounded by the deadline


def test_a_server_with_auth_refuses_anonymous_calls_and_serves_authenticated_ones(
    tmp_path: Path,
) -> None:
    with (
        prefect_server(tmp_path, **{SERVER_AUTH_ENV: AUTH}) as server,
        httpx.Client(base_url=server.api_url, timeout=30) as api,
    ):
        anonymous = api.post("/flows/filter", json={})
        wrong = api.post("/flows/filter", json={}, auth=("voxlake-test", "guess"))
        user, _, password = AUTH.partition(":")
        authenticated = api.post("/flows/filter", json={}, auth=(user, password))
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert authenticated.status_code == 200


def test_voxlake_serve_refuses_a_non_loopback_bind_without_auth(tmp_path: Path) -> None:
    home = tmp_path / "serve-home"
    done = subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "serve", "--host", "0.0.0.0", "--home", str(home)],
        env=clean_env(tmp_path / "client-home"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to serve the Prefect API on 0.0.0.0 without authentication" in done.stderr
    assert SERVER_AUTH_ENV in done.stderr
    assert not home.exists()  # nothing was started


def test_check_bind_allows_loopback_and_authenticated_binds() -> None:
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, {})
    check_bind("0.0.0.0", {SERVER_AUTH_ENV: AUTH})
    for host in ("0.0.0.0", "192.168.1.10", "my-host.example"):
        with pytest.raises(ServeError):
            check_bind(host, {})


def _start_serve(tmp_path: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`voxlake serve` (the installed script) on ``port``; its output goes to serve.log.

    It starts with SIGINT ignored, as a non-interactive shell starts a background job (and as
    CI may start this suite): serve must still stop on SIGINT.
    """
    voxlake = str(Path(sys.executable).with_name("voxlake"))
    ignoring_sigint = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    serving = ["--port", str(port), "--home", str(tmp_path / "prefect")]
    with (tmp_path / "serve.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-c", ignoring_sigint, voxlake, "serve", *serving],
            env=env,
            cwd=tmp_path,  # the checkout is found from the package, not the current folder
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_until_serving(serve: subprocess.Popen[bytes], api: httpx.Client, log: Path) -> None:
    def has_worker() -> bool:
        try:
            return bool(api.post("/work_pools/voxlake/workers/filter", json={}).json())
        except (httpx.HTTPError, ValueError):
            return serve.poll() is not None  # ends the wait; asserted below

    def ready() -> bool:
        return "Ctrl-C stops" in log.read_text() and has_worker()

    _wait_for(ready, "the backfill command printed and a worker on the voxlake pool")
    assert serve.poll() is None, log.read_text()


def _running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
    return running


@pytest.mark.timeout(900)
def test_voxlake_serve_runs_a_deployment_through_its_worker(
    tmp_path: Path, local_server: LocalServer
) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = clean_env(
        tmp_path / "client-home",
        PREFECT_UI_ENABLED="false",
        # What the worker's flow runs use, as an operator would export it.
        ASSEMBLYAI_BASE_URL=local_server.base_url,
        ASSEMBLYAI_API_KEY=KEY_A,
        PREFECT_WORKER_QUERY_SECONDS="2",  # the worker picks the run up sooner than every 10 s
    )
    log = tmp_path / "serve.log"
    serve = _start_serve(tmp_path, port, env)
    try:
        api = httpx.Client(base_url=api_url, timeout=30)
        _wait_until_serving(serve, api, log)
        printed = log.read_text()
        assert "prefect deployment run 'transcribe-manifest/backfill'" in printed
        assert f"Prefect UI: http://127.0.0.1:{port}" in printed

        limit = api.get("/v2/concurrency_limits/assemblyai-requests").json()
        assert limit["slot_decay_per_second"] > 0
        assert api.get("/block_types/slug/assemblyai-credentials").status_code == 200

        manifest = write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "media", 2))
        deployment = api.get("/deployments/name/transcribe-manifest/nightly").json()
        params = {"manifest": str(manifest), "output": str(tmp_path / "out")}
        run = api.post(
            f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": params}
        ).json()

        def final() -> dict[str, object] | None:
            state = api.get(f"/flow_runs/{run['id']}").json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

        _wait_for(final, "the nightly flow run finished through the worker")
        assert final()["type"] == "COMPLETED", log.read_text()[-3000:]  # type: ignore[index]
        assert (tmp_path / "out" / "transcripts").is_dir()
        children = psutil.Process(serve.pid).children(recursive=True)
    finally:
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            serve.wait(timeout=120)
            stopped_by_sigint = True
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
            stopped_by_sigint = False
    assert stopped_by_sigint, "voxlake serve ignored SIGINT for 120 s"
    _wait_for(lambda: not _running(children), "serve's server and worker stopped")


@pytest.mark.timeout(900)
def test_kill_9_of_voxlake_serve_leaves_no_process(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path / "client-home", PREFECT_UI_ENABLED="false")
    log = tmp_path / "serve.log"
    serve = _start_serve(tmp_path, port, env)
    started: list[psutil.Process] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=30) as api:
            _wait_until_serving(serve, api, log)
        started = psutil.Process(serve.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in started]
        assert any("prefect server start" in c for c in commands), commands
        assert any("prefect worker start" in c for c in commands), commands

        serve.kill()  # SIGKILL: serve itself stops nothing
        serve.wait()

        _wait_for(lambda: not _running(started), f"every process serve started gone: {commands}")
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        for leftover in _running(started):  # only when the test failed: leave nothing behind
            with contextlib.suppress(psutil.NoSuchProcess):
                leftover.kill()
