"""Shared harness of the benchmarks: processes, media, the local server, Prefect, bounds.

Everything a benchmark needs to run a client against ``voxlake serve-local`` as separate
processes and measure it: free ports and readiness polling (:func:`background`), the local
server with the issue's limits (:func:`local_server`), its stats, CPU and peak-RSS monitoring of
a child process (:class:`ChildMonitor`), seeded synthetic media (:func:`make_media`), a Prefect
server and its task-run counts (:func:`prefect_server`, :class:`TaskRunCounter`,
:func:`query_prefect`), py-spy profiles, and the lower bounds (:func:`bounds`).
"""

from __future__ import annotations

import collections
import contextlib
import csv
import datetime as dt
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
WORK = BENCH / ".work"
# The PREFECT_HOME of runs "as on a machine that has run Prefect before": one fixed path, restored
# from a template before each run. Fixed because Prefect memoises its block-type registration by
# database URL: at a fresh path every server start re-registers them (~0.7 s of its boot).
USER_PREFECT_HOME = WORK / "prefect-home-user"
RESULTS = BENCH / "results"
TICKS = os.sysconf("SC_CLK_TCK")
STAGES = ("upload", "submit", "poll", "collect")
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], url: str, what: str, deadline_s: float) -> None:
    """Poll ``url`` until it answers 200, with a deadline (an external process has no event)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {deadline_s:.0f} s ({url})")


@contextlib.contextmanager
def background(
    cmd: list[str], env: dict[str, str], log: Path, ready_url: str, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, ready_url, what, deadline_s=90)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live descendants."""
    root = psutil.Process(pid)
    total = cpu_s(root)
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += cpu_s(child)
    return total


def _stat_fields(text: str) -> list[str]:
    # After "(comm)": field 3 (state) first; utime, stime, cutime, cstime are fields 14-17.
    return text.rsplit(")", 1)[1].split()


def _own_cpu(stat: str) -> float:
    f = _stat_fields(stat)
    return (int(f[11]) + int(f[12])) / TICKS


def _children_cpu(stat: str) -> float:
    f = _stat_fields(stat)
    return (int(f[13]) + int(f[14])) / TICKS


class TaskRunCounter:
    """Samples the Prefect server's task-run counts (total, final) every ``interval_s``.

    The database is fresh for each benchmark run, so every task run in it is this flow run's.
    Runs in a thread from before the flow starts until :meth:`stop`, so the moment every task
    run is recorded in a final state is known to within ``interval_s`` (the drain time).
    """

    def __init__(self, api_url: str, interval_s: float = 0.25) -> None:
        self.api_url, self.interval_s = api_url, interval_s
        self.samples: list[tuple[float, int, int]] = []  # (wall time, total, final)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        final_filter = {"task_runs": {"state": {"type": {"any_": list(FINAL_STATES)}}}}
        with httpx.Client(base_url=self.api_url, timeout=30) as http:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    total = http.post("/task_runs/count", json={}).json()
                    final = http.post("/task_runs/count", json=final_filter).json()
                    self.samples.append((time.time(), int(total), int(final)))
                self._stop.wait(self.interval_s)

    def start(self) -> TaskRunCounter:
        self._thread.start()
        return self

    def wait_for(self, expected: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1][2] >= expected:
                break
            time.sleep(self.interval_s)
        self._stop.set()
        self._thread.join()

    def report(self, expected: int, exit_wall: float) -> dict[str, Any]:
        at_exit = [s for s in self.samples if s[0] <= exit_wall]
        done = [t for t, _, final in self.samples if final >= expected]
        first_final = next((t for t, _, final in self.samples if final > 0), None)
        out: dict[str, Any] = {
            "task_runs_at_exit": at_exit[-1][1] if at_exit else 0,
            "task_runs_final_at_exit": at_exit[-1][2] if at_exit else 0,
            "drain_after_exit_s": round(max(done[0] - exit_wall, 0.0), 2) if done else None,
        }
        if done and first_final is not None and done[0] > first_final:
            out["task_runs_recorded_per_s_avg"] = round(expected / (done[0] - first_final), 1)
        return out


class ChildMonitor:
    """Runs one command; records its wall time, CPU (own / children) and peak RSS.

    The child is waited for with ``WNOWAIT`` first, so its ``/proc/<pid>/stat`` (final utime,
    stime, and cutime/cstime of the children it reaped) can be read before it is reaped.
    ``VmHWM`` disappears at exit, so it is sampled while the child runs.
    """

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        log: Path,
        on_start: Callable[[int], object] | None = None,
    ) -> None:
        self.cmd, self.env, self.log, self.on_start = cmd, env, log, on_start
        self.peak_rss = 0
        self.started_wall = 0.0
        self.wall_s = 0.0
        self.exit_wall = 0.0
        self.cpu_own_s = 0.0
        self.cpu_children_s = 0.0
        self.returncode: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_samples: list[tuple[float, float]] = []

    def _sample(self, pid: int, stop: threading.Event) -> None:
        status, stat = Path(f"/proc/{pid}/status"), Path(f"/proc/{pid}/stat")
        while not stop.is_set():
            with contextlib.suppress(OSError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
                self.cpu_samples.append((time.time(), _own_cpu(stat.read_text())))
            stop.wait(0.05)

    def cpu_at(self, wall: float) -> float:
        """Own CPU seconds at a wall time (the last sample before it)."""
        before = [c for t, c in self.cpu_samples if t <= wall]
        return before[-1] if before else 0.0

    def run(self) -> None:
        with self.log.open("wb") as out:
            self.started_wall = time.time()
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
            )
            if self.on_start is not None:
                self.on_start(self.proc.pid)
            stop = threading.Event()
            sampler = threading.Thread(target=self._sample, args=(self.proc.pid, stop))
            sampler.start()
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
            self.wall_s = time.perf_counter() - t0
            self.exit_wall = time.time()
            stop.set()
            sampler.join()
            text = Path(f"/proc/{self.proc.pid}/stat").read_text()
            self.cpu_own_s, self.cpu_children_s = _own_cpu(text), _children_cpu(text)
            self.cpu_samples.append((self.exit_wall, self.cpu_own_s))
            self.returncode = self.proc.wait()


# --- media ------------------------------------------------------------------------------------


def durations(n: int, seed: int, lo: float, hi: float) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(lo, hi), 2) for _ in range(n)]


def write_noise_wav(path: Path, duration_s: float, rate: int, seed: int) -> Path:
    """A mono 16-bit WAV of quiet seeded noise: real bytes, ~100x faster to make than synth."""
    import wave

    import numpy as np

    samples = np.random.default_rng(seed).integers(-300, 300, int(duration_s * rate))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def make_media(
    n: int, seed: int, lo: float, hi: float, rate: int, kind: str = "synth"
) -> tuple[Path, list[float]]:
    """N WAVs and ``manifest.csv``, cached by parameters.

    ``kind="synth"``: voxlake's synthetic speech-like WAVs (``write_synth_wav``); ``"noise"``:
    quiet noise (:func:`write_noise_wav`), for 10,000-file sets. The scripted engine reads only
    the duration, so both cost the server the same.
    """
    from voxlake.emulator.synth import write_synth_wav

    durs = durations(n, seed, lo, hi)
    suffix = "" if kind == "synth" else f"-{kind}"
    root = WORK / f"media-n{n}-seed{seed}-{lo:g}-{hi:g}s-{rate}hz{suffix}"
    manifest = root / "manifest.csv"
    if manifest.exists():
        return manifest, durs
    (root / "media").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, d in enumerate(durs):
        name = f"media/f{i:05d}.wav"
        if kind == "synth":
            write_synth_wav(root / name, None, d, sample_rate=rate, seed=seed * 1_000_003 + i)
        else:
            write_noise_wav(root / name, d, rate, seed * 1_000_003 + i)
        rows.append({"source": name, "media_id": f"f{i:05d}"})
    tmp = root / "manifest.csv.tmp"
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["source", "media_id"])
        writer.writeheader()
        writer.writerows(rows)
    tmp.rename(manifest)
    return manifest, durs


# --- Prefect API queries ----------------------------------------------------------------------


def _prefect(api_url: str) -> Any:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api_url})


async def _flow_run(client: Any) -> Any:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    runs = await client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=["transcribe-manifest"])),
        sort=FlowRunSort.START_TIME_DESC,
        limit=1,
    )
    return runs[0] if runs else None


async def _count(client: Any, flow_run_id: Any, final_only: bool) -> int:
    """``POST /task_runs/count`` (PrefectClient has no count_task_runs in 3.8)."""
    body: dict[str, Any] = {"flow_runs": {"id": {"any_": [str(flow_run_id)]}}}
    if final_only:
        body["task_runs"] = {"state": {"type": {"any_": list(FINAL_STATES)}}}
    response = await client._client.post("/task_runs/count", json=body)
    return int(response.json())


async def _task_runs(client: Any, flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[Any] = []
    while True:
        page = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            limit=200,
            offset=len(runs),
        )
        runs += page
        if len(page) < 200:
            return runs


async def query_prefect(api_url: str, expected: int) -> dict[str, Any]:
    """The flow run and its task runs, as the Prefect API has recorded them."""
    from prefect.client.orchestration import get_client

    with _prefect(api_url):
        async with get_client() as client:
            fr = await _flow_run(client)
            if fr is None:
                return {"error": "no flow run recorded"}
            final = await _count(client, fr.id, final_only=True)
            runs = await _task_runs(client, fr.id)
    return {
        "flow_run_id": str(fr.id),
        "task_runs": len(runs),
        "task_runs_final": final,
        "task_runs_expected": expected,
        "flow_run_state": fr.state.type.value if fr.state else None,
        "flow_run_start": fr.start_time.timestamp() if fr.start_time else None,
        "flow_run_end": fr.end_time.timestamp() if fr.end_time else None,
        "task_run_stages": _stage_times(runs),
    }


def _stage_times(runs: list[Any]) -> dict[str, Any]:
    """Per task name: count and the mean/max run time; plus gaps between a chunk's stages."""
    by_name: dict[str, list[float]] = collections.defaultdict(list)
    for r in runs:
        if r.start_time and r.end_time:
            by_name[r.name.split("-")[0]].append((r.end_time - r.start_time).total_seconds())
    return {
        name: {
            "count": len(v),
            "mean_s": round(statistics.fmean(v), 3),
            "max_s": round(max(v), 3),
            "sum_s": round(sum(v), 1),
        }
        for name, v in sorted(by_name.items())
    }


# --- output and server-side timeline ----------------------------------------------------------


def _wire_time(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()


def server_transcripts(base_url: str, key: str) -> list[dict[str, Any]]:
    """Every transcript of the account (created / completed stamps), newest first."""
    items: list[dict[str, Any]] = []
    url: str | None = f"{base_url}/v2/transcript?limit=200"
    with httpx.Client(headers={"Authorization": key}, timeout=30) as http:
        while url:
            page = http.get(url).raise_for_status().json()
            items += page["transcripts"]
            url = page["page_details"].get("prev_url")
    return items


def timeline(output: Path, server_items: list[dict[str, Any]], t0: float) -> dict[str, Any]:
    """When items were submitted, finished server-side and seen by the client (s from start)."""
    from voxlake.lake.read import read_table

    table = read_table(
        output, "transcripts", columns=["transcript_id", "submitted_at", "completed_at"]
    )
    rows = table.to_pylist()
    server = {i["id"]: (_wire_time(i["created"]), _wire_time(i["completed"])) for i in server_items}
    submitted = [r["submitted_at"].timestamp() - t0 for r in rows if r["submitted_at"]]
    seen = [r["completed_at"].timestamp() - t0 for r in rows if r["completed_at"]]
    done = [c - t0 for c0, c in server.values() if c is not None]
    lag = sorted(
        r["completed_at"].timestamp() - server[r["transcript_id"]][1]
        for r in rows
        if r["completed_at"] and server.get(r["transcript_id"], (None, None))[1]
    )
    turnaround = sorted(c - c0 for c0, c in server.values() if c is not None and c0 is not None)

    def pct(v: list[float], q: float) -> float | None:
        return round(v[min(len(v) - 1, int(q * len(v)))], 2) if v else None

    return {
        "first_submit_s": round(min(submitted), 2) if submitted else None,
        "last_submit_s": round(max(submitted), 2) if submitted else None,
        "last_server_completed_s": round(max(done), 2) if done else None,
        "last_client_seen_s": round(max(seen), 2) if seen else None,
        "server_turnaround_s": {"p50": pct(turnaround, 0.5), "p90": pct(turnaround, 0.9)},
        "seen_after_server_completed_s": {
            "p50": pct(lag, 0.5),
            "p90": pct(lag, 0.9),
            "max": pct(lag, 1.0),
        },
    }


# --- profile ----------------------------------------------------------------------------------

# py-spy frames look like "function (package/module.py:line)"; a sample counts for a bucket when
# any frame of its stack matches (so buckets overlap: they are inclusive shares).
_BUCKETS: dict[str, tuple[str, ...]] = {
    "prefect (any frame)": ("(prefect/",),
    "prefect task engine": ("(prefect/task_engine.py",),
    "prefect events/state reporting": ("(prefect/events/", "emit_task_run_state_change_event"),
    "httpx/httpcore": ("(httpx/", "(httpcore/"),
    "httpcore pool scan (has_expired)": ("AsyncHTTPConnection.has_expired",),
    "pydantic": ("(pydantic/", "(pydantic_core/"),
    "pyarrow / table sink": ("(pyarrow/", "(voxlake/lake/"),
    "upload items": ("TranscriptionRun._upload_one",),
    "submit items": ("TranscriptionRun._submit_one",),
    "collect items (fetch + parse + write)": (
        "TranscriptionRun._collect_one",
        "TranscriptionRun._write",
    ),
    "status poller": ("SharedPoller._run",),
    "worker threads": ("Thread._bootstrap",),
    "imports": ("<frozen importlib._bootstrap>",),
}


def summarize_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """py-spy ``--format raw`` (folded stacks) -> inclusive share per library and top frames."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        n = int(count_text)
        total += n
        frames = stack.split(";")
        leaf[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
        for name, pats in _BUCKETS.items():
            if any(p in f for f in frames for p in pats):
                buckets[name] += n

    def share(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / max(total, 1), 1)) for k, v in c.most_common(top)]

    return {
        "samples": total,
        "inclusive_pct_by_library": dict(share(buckets)),
        "top_inclusive_pct": share(inclusive),
        "top_self_pct": share(leaf),
    }


@contextlib.contextmanager
def prefect_server(base: dict[str, str], work: Path) -> Iterator[tuple[Any, str]]:
    port = free_port()
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--no-ui", "--analytics-off"]
    url = f"http://127.0.0.1:{port}/api"
    log = work / f"prefect-server-{port}.log"
    with background(cmd, base, log, f"{url}/health", "prefect server") as proc:
        yield proc, url


@contextlib.contextmanager
def prefect_database(database: str, work: Path, base: dict[str, str]) -> Iterator[dict[str, str]]:
    """The Prefect server's database: its default SQLite (in ``PREFECT_HOME``), or a PostgreSQL
    started as ``voxlake serve --database postgresql`` starts it, with its files in
    ``work/postgres`` and a free port (so two benchmarks, or a test's drill, never share one);
    yields the environment for ``prefect_server``."""
    if database == "sqlite":
        yield base
        return
    from voxlake import lifeline, postgres

    process, url = postgres.start(work / "postgres", base)
    try:
        yield base | {postgres.URL_ENV: url}
    finally:
        lifeline.stop(process)


@contextlib.contextmanager
def prefect_worker(
    env: dict[str, str], name: str, log: Path, pool: str = "voxlake", limit: int = 1
) -> Iterator[subprocess.Popen[bytes]]:
    """``prefect worker start --pool POOL`` in its own session, taking at most ``limit`` flow
    runs at once; on exit it and every flow-run process it started (its descendants) stop."""
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--name", name]
    cmd += ["--limit", str(limit)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        family: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.kill()


#: What ``voxlake.ratelimit`` logs when one ``rate_limit`` call of the shared budget took
#: ``SLOW_SHARED_TAKE_S`` (5 s) or more, and when a process gave up on the shared budget.
SLOW_SHARED_WAIT = re.compile(
    r"waited (\d+(?:\.\d+)?) s for \d+ slots of the shared request budget"
)
FALLBACK_MARK = "shared request budget unavailable"


def slow_shared_waits(text: str) -> list[float]:
    """Every ``rate_limit`` wait of 5 s or more that a log records, in seconds (the shared
    budget logs no shorter one)."""
    return [float(m.group(1)) for m in SLOW_SHARED_WAIT.finditer(text)]


def database_locked(work: Path) -> int:
    """How many times the Prefect server logged SQLite's ``database is locked`` (one per
    traceback)."""
    return sum(
        log.read_text(errors="replace").count("sqlite3.OperationalError: database is locked")
        for log in work.glob("prefect-server-*.log")
    )


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (all threads, on-CPU only) into folded stacks at ``out``."""
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit(
            "--profile needs py-spy: uv run --with py-spy python " + " ".join(sys.argv)
        )
    cmd = [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
    cmd += ["--output", str(out), "--nonblocking"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- the local server -------------------------------------------------------------------------

RATE_LIMIT = 20_000  # requests per window, account-wide (AssemblyAI's documented limit)
RATE_WINDOW_S = 300.0


@dataclass(frozen=True)
class ServerSpec:
    """The local server's limits: concurrency C and processing time p = fixed + per_audio x d."""

    concurrency: int
    processing_fixed: float
    processing_per_audio: float
    rate_limit: int = RATE_LIMIT
    rate_window_s: float = RATE_WINDOW_S

    def p(self, duration_s: float) -> float:
        return self.processing_fixed + self.processing_per_audio * duration_s


def compile_project() -> None:
    """Cache voxlake's bytecode, as Python does on a first import anywhere else.

    This machine sets ``PYTHONDONTWRITEBYTECODE=1``, and ``uv sync --compile-bytecode`` skips
    the editable project, so every benchmarked process would compile voxlake's ~50 modules
    again (~0.2 s of its start-up): a cost no installed copy pays. Python checks a cached file
    against its source, so a stale one is never used.
    """
    import compileall

    compileall.compile_dir(REPO / "voxlake", quiet=1)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Prefect or AssemblyAI settings, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ASSEMBLYAI_"))}
    return base | {"PREFECT_SERVER_ANALYTICS_ENABLED": "0"} | extra


@contextlib.contextmanager
def local_server(work: Path, spec: ServerSpec, key: str) -> Iterator[tuple[Any, str]]:
    """``voxlake serve-local`` (scripted engine) as its own process; yields (process, base URL).

    The key goes through ``VOXLAKE_LOCAL_API_KEYS`` (argv is visible in ps). Uploads are stored
    under ``work/uploads`` and deleted afterwards.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "voxlake.cli", "serve-local", "--port", str(port)]
    cmd += ["--concurrency", str(spec.concurrency), "--engine", "scripted"]
    cmd += ["--processing-fixed", str(spec.processing_fixed)]
    cmd += ["--processing-per-audio", str(spec.processing_per_audio)]
    cmd += ["--rate-limit", str(spec.rate_limit), "--rate-window", str(spec.rate_window_s)]
    cmd += ["--upload-dir", str(work / "uploads"), "--log-level", "WARNING"]
    url = f"http://127.0.0.1:{port}"
    work.mkdir(parents=True, exist_ok=True)
    env = clean_env(VOXLAKE_LOCAL_API_KEYS=key)
    try:
        with background(
            cmd, env, work / f"server-{port}.log", f"{url}/_voxlake/stats", "voxlake serve-local"
        ) as proc:
            yield proc, url
    finally:
        shutil.rmtree(work / "uploads", ignore_errors=True)


def server_stats(url: str) -> dict[str, Any]:
    """``GET /_voxlake/stats``: requests by route and status, 429s, max concurrent processing."""
    return httpx.get(f"{url}/_voxlake/stats", timeout=30).raise_for_status().json()


def request_figures(stats: dict[str, Any], n: int) -> dict[str, Any]:
    by_route = stats["requests_by_route"]
    total = sum(by_route.values())
    return {
        "requests_total": total,
        "requests_per_file": round(total / n, 3),
        "requests_per_file_by_route": {k: round(v / n, 3) for k, v in sorted(by_route.items())},
        "requests_by_status": stats["requests_by_status"],
        "rate_limited_429": stats["rate_limited"],
        "max_concurrent_processing": stats["max_concurrent_processing"],
    }


# --- lower bounds -----------------------------------------------------------------------------


def min_requests(n_uploaded: int, n_url: int = 0) -> int:
    """3 per uploaded file (upload, submit, fetch), 2 per URL source (submit, fetch)."""
    return 3 * n_uploaded + 2 * n_url


def rate_bound(requests: int, limit: int, window_s: float) -> float:
    """Earliest time the last of ``requests`` can be sent under a sliding-window limit.

    ``limit`` requests may go at once; each further block of ``limit`` waits for the previous
    block to leave the window. 0 when everything fits in one window.
    """
    return window_s * (math.ceil(requests / limit) - 1) if requests > 0 else 0.0


def bounds(durs: list[float], spec: ServerSpec, first_upload_s: float = 0.0) -> dict[str, Any]:
    """The issue's bound ``L = max(sum(p)/C, max(p)) (+ first upload)``, and the rate bound.

    ``L_rate`` is not in the issue's formula: it binds only when the minimum requests exceed one
    rate-limit window (B4's 10,000 files). ``L`` is the larger of the two.
    """
    p = [spec.p(d) for d in durs]
    l_proc = max(sum(p) / spec.concurrency, max(p)) + first_upload_s
    reqs = min_requests(len(durs))
    l_rate = rate_bound(reqs, spec.rate_limit, spec.rate_window_s)
    return {
        "L_processing_s": round(l_proc, 2),
        "L_rate_s": round(l_rate, 2),
        "L_s": round(max(l_proc, l_rate), 2),
        "sum_p_s": round(sum(p), 1),
        "max_p_s": round(max(p), 3),
        "first_upload_s": round(first_upload_s, 3),
        "min_requests": reqs,
        "min_requests_per_file": 3,
    }


def lower_bound(durs: list[float], fixed: float, per_audio: float, c: int) -> float:
    p = [fixed + per_audio * d for d in durs]
    return max(sum(p) / c, max(p))
