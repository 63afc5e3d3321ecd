"""`voxlake serve` on real parts: Prefect's basic auth, the refusal to open a door without it,
and the whole one-machine setup running a deployment through its worker."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.flowkit import speech_clips, write_manifest
from tests.support.prefect_server import (
    DatabaseTemplate,
    clean_env,
    free_port,
    prefect_api,
    prefect_server,
)
from tests.support.secrets import KEY_A, KEY_B
from voxlake.emulator import LocalServer
from voxlake.serve import SERVER_AUTH_ENV, ServeError, check_bind, choose_endpoint, commands

REPO = Path(__file__).resolve().parents[2]
AUTH = "voxlake-test:Wd8pQz3rT6yL"
DEADLINE_S = 240.0

pytestmark = pytest.mark.slow


def _wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S:g} s: {what}"
        time.sleep(0.2)  # polling other processes' state, bounded by the deadline


def test_a_server_with_auth_refuses_anonymous_calls_and_serves_authenticated_ones(
    tmp_path: Path, prefect_db_template: DatabaseTemplate
) -> None:
    with (
        prefect_server(tmp_path, prefect_db_template, **{SERVER_AUTH_ENV: AUTH}) as server,
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


def test_the_endpoint_is_the_key_else_a_block_of_the_user_else_the_embedded_server() -> None:
    from voxlake.credentials import AssemblyAICredentials
    from voxlake.emulator import DEFAULT_API_KEY

    eu = {"ASSEMBLYAI_API_KEY": KEY_A, "ASSEMBLYAI_REGION": "eu"}
    users = AssemblyAICredentials(api_key=KEY_B, base_url="http://127.0.0.1:8765")
    embedded = AssemblyAICredentials(api_key=DEFAULT_API_KEY, base_url="http://127.0.0.1:1")

    saved, said = choose_endpoint(eu, users)  # the environment wins, and is saved
    assert saved is not None and saved.api_key.get_secret_value() == KEY_A
    assert saved.base_url == "https://api.eu.assemblyai.com"
    assert said.startswith("AssemblyAI endpoint: https://api.eu.assemblyai.com, with the key in")
    assert choose_endpoint({}, users) == (
        None,
        "AssemblyAI endpoint: http://127.0.0.1:8765, with the key saved in the block "
        "'assemblyai' (no ASSEMBLYAI_API_KEY in the environment)",
    )
    assert choose_endpoint({}, embedded) == (None, "")  # an earlier serve's: the embedded again
    assert choose_endpoint({}, None) == (None, "")
    with pytest.raises(ServeError, match="Unknown region 'mars'"):
        choose_endpoint({**eu, "ASSEMBLYAI_REGION": "mars"}, None)
    assert KEY_A not in said


def test_the_commands_serve_prints_are_those_docs_operations_md_shows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)  # as `make serve` runs
    docs = (REPO / "docs" / "operations.md").read_text()
    printed = commands("http://127.0.0.1:4200/api", {}, "voxlake")
    shown = [line for line in printed if line.startswith("  ")]
    assert len(shown) == 2
    for line in printed:
        assert line.strip() in docs, line


def _serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(
        tmp_path / "client-home",
        PREFECT_UI_ENABLED="false",
        PREFECT_WORKER_QUERY_SECONDS="2",  # the worker picks a run up sooner than every 10 s
        # SQLite on a loaded machine: wait for the lock, as tests/support/prefect_server.py does.
        PREFECT_SERVER_DATABASE_TIMEOUT="60",
        PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT="60",
        **extra,
    )


def _start_serve(
    tmp_path: Path, port: int, env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """`voxlake serve ARGS` (the installed script) on ``port``; its output goes to serve.log.

    It starts with SIGINT ignored, as a non-interactive shell starts a background job (and as
    CI may start this suite): serve must still stop on SIGINT.
    """
    voxlake = str(Path(sys.executable).with_name("voxlake"))
    ignoring_sigint = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    serving = ["--port", str(port), "--home", str(tmp_path / "prefect"), *args]
    with (tmp_path / "serve.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-c", ignoring_sigint, voxlake, "serve", *serving],
            env=env,
            # By default not the checkout: serve finds it from the package, not the current folder.
            cwd=cwd or tmp_path,
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
    env = _serve_env(
        tmp_path,
        # What the worker's flow runs use, as an operator would export it.
        ASSEMBLYAI_BASE_URL=local_server.base_url,
        ASSEMBLYAI_API_KEY=KEY_A,
    )
    log = tmp_path / "serve.log"
    serve = _start_serve(tmp_path, port, env)
    try:
        api = prefect_api(api_url, timeout_s=30)
        _wait_until_serving(serve, api, log)
        printed = log.read_text()
        assert f"AssemblyAI endpoint: {local_server.base_url}, with the key in" in printed
        assert "embedded local" not in printed
        assert f"Prefect UI: http://127.0.0.1:{port}" in printed
        # The key went into the block the deployments name, and is shown nowhere.
        assert "credentials_block" not in printed and KEY_A not in printed

        limit = api.get("/v2/concurrency_limits/assemblyai-requests").json()
        assert limit["slot_decay_per_second"] > 0
        assert api.get("/block_types/slug/assemblyai-credentials").status_code == 200

        manifest = write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "media", 2))
        deployment = api.get("/deployments/name/transcribe-manifest/nightly").json()
        params = {"manifest": str(manifest), "output": str(tmp_path / "out")}
        # With a key: a request the server answered 503 is sent again (prefect_api), and must
        # not make a second run.
        created = api.post(
            f"/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": params, "idempotency_key": f"test-{port}"},
        )
        assert created.status_code == 201, created.text
        run = created.json()

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
    assert serve.returncode == 130, log.read_text()[-3000:]  # Ctrl-C's status, said once
    assert log.read_text().count("Interrupted: voxlake serve stopped") == 1
    _wait_for(lambda: not _running(children), "serve's server and worker stopped")


def _printed(log: str, marker: str) -> str:
    """The command ``voxlake serve`` printed (an indented line after the UI's address; the
    output of ``prefect deploy`` comes before it) that contains ``marker``."""
    lines = log.split("Prefect UI:", 1)[-1].splitlines()
    found = [line.strip() for line in lines if line.startswith("  ") and marker in line]
    assert found, f"no printed command with {marker!r}:\n{log}"
    return found[0]


def _new_shell_env(home: Path) -> dict[str, str]:
    """A new shell in the checkout: no virtual environment active, no Prefect or AssemblyAI
    setting (a fresh machine's profile names no API)."""
    venv_bin = Path(sys.executable).parent.resolve()
    env = clean_env(home)
    env.pop("VIRTUAL_ENV", None)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != venv_bin]
    return {**env, "PATH": os.pathsep.join(path)}


def _in_shell(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, shell=True, env=env, cwd=REPO, capture_output=True, text=True, timeout=280
    )


@pytest.mark.timeout(900)
def test_without_a_key_serve_and_its_printed_backfill_over_data_complete(tmp_path: Path) -> None:
    """The walk-through of docs/operations.md on a machine with no key: `make serve` (in the
    checkout), then in a new shell the backfill command it printed (its output moved into this
    test's folder) and the query command it printed: every item of data/ once. Then `kill -9`
    of serve leaves none of the processes it started (Prefect server, local server, worker)."""
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _serve_env(tmp_path)
    log = tmp_path / "serve.log"
    # The scripted engine (documented): speech recognition of 13 clips would only slow the test.
    serve = _start_serve(tmp_path, port, env, "--local-arg=--engine=scripted", cwd=REPO)
    started: list[psutil.Process] = []
    try:
        api = prefect_api(api_url, timeout_s=30)
        _wait_until_serving(serve, api, log)
        printed = log.read_text()
        assert "No ASSEMBLYAI_API_KEY: the deployments use the embedded local" in printed
        # No command that does not run as printed (Prefect's banner and deploy hints need an
        # active virtual environment): they are kept out of serve's output.
        assert "$ prefect" not in printed and "prefect config set" not in printed
        started = psutil.Process(serve.pid).children(recursive=True)
        commands = [" ".join(p.cmdline()) for p in started]
        for child in ("prefect server start", "voxlake.cli serve-local", "prefect worker start"):
            assert any(child in c for c in commands), commands

        shell = _new_shell_env(tmp_path / "shell-home")
        out = tmp_path / "backfill"
        backfill = _in_shell(f"{_printed(printed, 'deployment run')} -p output={out}", shell)
        assert backfill.returncode == 0, backfill.stdout + backfill.stderr
        found = re.search(r"UUID: ([0-9a-f-]{36})", backfill.stdout)
        assert found, backfill.stdout

        def final() -> dict[str, object] | None:
            state: dict[str, object] = api.get(f"/flow_runs/{found.group(1)}").json()["state"]
            return state if state["type"] in ("COMPLETED", "FAILED", "CRASHED") else None

        _wait_for(final, "the backfill finished through the worker")
        assert final()["type"] == "COMPLETED", log.read_text()[-3000:]  # type: ignore[index]

        query = _printed(printed, "voxlake query").replace("output/backfill", str(out))
        shown = _in_shell(f"{query} --format csv", shell)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        expected = sorted(
            f"media/{p.name}" for p in (REPO / "data" / "media").iterdir() if p.suffix != ".txt"
        )
        rows = list(csv.DictReader(io.StringIO(shown.stdout)))
        assert sorted(row["media_id"] for row in rows) == expected, shown.stdout

        started = psutil.Process(serve.pid).children(recursive=True)
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
