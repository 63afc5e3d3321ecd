"""Real processes for the end-to-end tests: `voxlake serve-local` and `voxlake run`.

The CLI runs as a subprocess in its own session (so a test can ``kill -9`` it and anything it
started), reporting to the suite's Prefect API (``prefect_harness``). The local server runs as
its own process too, and its ``/_voxlake/stats`` counts what was really submitted.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from voxlake.settings import POLL_FIRST_ENV

REPO = Path(__file__).resolve().parents[2]
LOCAL_KEY = "clikit-local-key-0f3a9c"  # a key of these tests' own server only


def wait_until(condition: Any, what: str, deadline_s: float = 120.0, every_s: float = 0.05) -> Any:
    """Poll ``condition()`` until it is truthy; fail with ``what`` after a generous deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        time.sleep(every_s)


class ServeLocal:
    """`voxlake serve-local` as a process on a free port, with the scripted engine."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.log = tmp / f"serve-local-{os.getpid()}-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "voxlake.cli", "serve-local", "--port", "0"]
        cmd += ["--api-key", LOCAL_KEY, "--engine", "scripted", "--log-level", "WARNING"]
        cmd += ["--processing-fixed", "0.1", "--concurrency", "4", *args]
        self._log_fh = self.log.open("w")
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=self._log_fh, stderr=subprocess.STDOUT, env=clean_env()
        )
        self.base_url = wait_until(self._address, "serve-local to print its address")

    def _address(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"serve-local exited: {self.log.read_text()}")
        found = re.search(r"voxlake local server on (http://\S+)", self.log.read_text())
        return found.group(1) if found else None

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/_voxlake/stats", timeout=30)
        response.raise_for_status()
        return response.json()

    def submissions(self) -> int:
        return sum(self.stats()["submissions_by_key"].values())

    def requests(self) -> int:
        return sum(self.stats()["requests_by_route"].values())

    def jobs(self) -> list[dict[str, Any]]:
        """Every job of the key, newest first (the list endpoint, paged)."""
        jobs: list[dict[str, Any]] = []
        url: str | None = f"{self.base_url}/v2/transcript?limit=200"
        while url:
            page = httpx.get(url, headers={"Authorization": LOCAL_KEY}, timeout=30).json()
            jobs += page["transcripts"]
            url = page["page_details"].get("prev_url") if len(page["transcripts"]) == 200 else None
        return jobs

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log_fh.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSEMBLYAI_", "VOXLAKE_"))}
    return env | extra


def run_env(server: ServeLocal, prefect_api_url: str | None = None, **extra: str) -> dict[str, str]:
    """A `voxlake run` against ``server``; with ``prefect_api_url`` the run is a flow run on that
    Prefect API, else it runs in its own process, as a new user's does (no Prefect API)."""
    # The suite's first status poll (tests/conftest.py), which clean_env drops with every other
    # VOXLAKE_ variable: at the production 3 s, each run waited ~3 s idle for jobs this server
    # finishes in 0.1 s. test_poll_pacing.py removes it to measure the production pacing.
    first = os.environ.get(POLL_FIRST_ENV)
    first_poll = {POLL_FIRST_ENV: first} if first else {}
    prefect = {"PREFECT_API_URL": prefect_api_url} if prefect_api_url else {}
    return clean_env(
        ASSEMBLYAI_BASE_URL=server.base_url,
        ASSEMBLYAI_API_KEY=LOCAL_KEY,
        **(prefect | first_poll | extra),
    )


def voxlake_run(
    args: Sequence[str], env: dict[str, str], timeout_s: float = 300, *, report: bool = False
) -> subprocess.CompletedProcess[str]:
    """`voxlake run ARGS` as a process. Without ``report`` it writes no HTML report: drawing it
    was about half of a small run's CPU (~1.2 s), and only the tests of the report read it."""
    cmd = [sys.executable, "-m", "voxlake.cli", "run", *args, "--no-progress"]
    cmd += [] if report else ["--no-report"]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout_s)


def run_and_crash(args: Sequence[str], env: dict[str, str], crashpoint: str) -> None:
    """Start `voxlake run`, wait until it stops itself at ``crashpoint``, then kill -9 it and
    everything it started (its whole session)."""
    cmd = [sys.executable, "-m", "voxlake.cli", "run", *args, "--no-progress"]
    proc = subprocess.Popen(
        cmd,
        env=env | {"VOXLAKE_TEST_HOOKS": "1", "VOXLAKE_CRASHPOINT": crashpoint},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def stopped() -> bool:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"run exited ({proc.returncode}) before {crashpoint}:\n{out}")
        return process_state(proc.pid) == "T"

    try:
        wait_until(stopped, f"the run to reach {crashpoint}", deadline_s=240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        if proc.stdout:
            proc.stdout.close()


def process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]
