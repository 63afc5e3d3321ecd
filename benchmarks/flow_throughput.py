"""Flow throughput benchmark: files/s, requests per file and Prefect task runs of `voxlake run`.

A measurement, not a test. Everything runs as separate processes, as a user would run them::

    uv run python benchmarks/flow_throughput.py --files 500 --concurrency 100
    uv run python benchmarks/flow_throughput.py --files 2000 --concurrency 100

1. N small synthetic WAVs (8 kHz, seeded durations of 2-10 s) and a manifest CSV are written
   under ``benchmarks/.work/`` (cached between runs with the same parameters).
2. ``voxlake serve-local`` starts as its own process (concurrency C, processing time
   ``fixed + per_audio x duration`` per job), readiness polled on ``/_voxlake/stats``.
3. ``--prefect server`` (default): a ``prefect server start`` process with a fresh SQLite
   database in the work dir; the flow reports to it. ``--prefect ephemeral``: the flow uses
   Prefect's ephemeral API (a fresh ``PREFECT_HOME``), and afterwards a server is started on the
   same database to read what it recorded.
4. ``python -m voxlake.cli run MANIFEST --output DIR --no-progress`` runs with
   ``ASSEMBLYAI_BASE_URL`` / ``ASSEMBLYAI_API_KEY`` in its environment. Measured: wall time of the
   command, the flow's own elapsed (its summary line), its CPU seconds (own, and separately its
   child processes: the ephemeral Prefect server) and its peak RSS (``VmHWM``).
5. Afterwards: the local server's stats (requests by route, 429s, max concurrent processing),
   the Prefect task runs of the flow run and how long the Prefect server took to record them all
   in a final state after the command exited (drain), and a timeline from the Parquet output, the
   server's transcript list and the task runs.

Results go to ``benchmarks/results/flow_throughput-<files>[-<mode>].json``; a markdown table row
is printed. ``--profile`` samples the flow process with py-spy (``uv run --with py-spy python
benchmarks/flow_throughput.py --profile ...``) and prints where its CPU time goes; profiled runs
are slower, so their throughput is not the benchmark figure.

The physical lower bound of the makespan is ``L = max(sum(p_i) / C, max(p_i))`` with
``p_i = fixed + per_audio x duration_i``: no client can finish before the server has processed
every job at full concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import csv
import datetime as dt
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
WORK = BENCH / ".work"
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


def make_media(n: int, seed: int, lo: float, hi: float, rate: int) -> tuple[Path, list[float]]:
    """N synthetic WAVs and ``manifest.csv``, cached by parameters."""
    from voxlake.emulator.synth import write_synth_wav

    durs = durations(n, seed, lo, hi)
    root = WORK / f"media-n{n}-seed{seed}-{lo:g}-{hi:g}s-{rate}hz"
    manifest = root / "manifest.csv"
    if manifest.exists():
        return manifest, durs
    (root / "media").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, d in enumerate(durs):
        name = f"media/f{i:05d}.wav"
        write_synth_wav(root / name, None, d, sample_rate=rate, seed=seed * 1_000_003 + i)
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
    from voxlake.tables import read_table

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
    "pyarrow / table sink": ("(pyarrow/", "(voxlake/tables.py"),
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


# --- the run ----------------------------------------------------------------------------------


def lower_bound(durs: list[float], fixed: float, per_audio: float, c: int) -> float:
    p = [fixed + per_audio * d for d in durs]
    return max(sum(p) / c, max(p))


def run(args: argparse.Namespace) -> dict[str, Any]:
    from voxlake.pipeline import auto_chunk_size

    n = args.files
    manifest, durs = make_media(n, args.seed, args.min_duration, args.max_duration, args.rate)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = WORK / f"run-{n}-{args.prefect}-{stamp}"
    work.mkdir(parents=True)
    key = "bench-" + secrets.token_hex(8)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ASSEMBLYAI_"))}
    base |= {"PREFECT_HOME": str(work / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "0"}
    py = sys.executable

    emu_port = free_port()
    emu_cmd = [py, "-m", "voxlake.cli", "serve-local", "--port", str(emu_port)]
    emu_cmd += ["--concurrency", str(args.concurrency), "--engine", "scripted"]
    emu_cmd += ["--processing-fixed", str(args.processing_fixed)]
    emu_cmd += ["--processing-per-audio", str(args.processing_per_audio)]
    emu_cmd += ["--upload-dir", str(work / "uploads"), "--log-level", "WARNING"]
    emu_url = f"http://127.0.0.1:{emu_port}"
    chunk = args.chunk_size or auto_chunk_size(n)
    expected = len(STAGES) * math.ceil(n / chunk)

    result: dict[str, Any] = {
        "files": n,
        "concurrency": args.concurrency,
        "prefect_mode": args.prefect,
        "processing_fixed_s": args.processing_fixed,
        "processing_per_audio_s": args.processing_per_audio,
        "durations_s": [args.min_duration, args.max_duration],
        "sample_rate": args.rate,
        "chunk_size": chunk,
        "max_uploads": args.max_uploads,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    with contextlib.ExitStack() as stack:
        emu = stack.enter_context(
            background(
                emu_cmd,
                base | {"VOXLAKE_LOCAL_API_KEYS": key},
                work / "server.log",
                f"{emu_url}/_voxlake/stats",
                "voxlake serve-local",
            )
        )
        flow_env = base | {"ASSEMBLYAI_BASE_URL": emu_url, "ASSEMBLYAI_API_KEY": key}
        flow_env["COLUMNS"] = "200"  # the summary line unwrapped, for parsing
        prefect_url: str | None = None
        prefect_proc: subprocess.Popen[bytes] | None = None
        counter: TaskRunCounter | None = None
        if args.prefect == "server":
            prefect_proc, prefect_url = stack.enter_context(_prefect_server(base, work))
            flow_env["PREFECT_API_URL"] = prefect_url
            counter = TaskRunCounter(prefect_url).start()
        flow_cmd = [py, "-m", "voxlake.cli", "run", str(manifest), "--output", str(work / "out")]
        flow_cmd += ["--no-progress", "--max-uploads", str(args.max_uploads)]
        if args.chunk_size:
            flow_cmd += ["--chunk-size", str(args.chunk_size)]

        emu_cpu0 = tree_cpu_s(emu.pid)
        pf_cpu0 = tree_cpu_s(prefect_proc.pid) if prefect_proc else 0.0
        spies: list[subprocess.Popen[bytes]] = []
        mon = ChildMonitor(
            flow_cmd,
            flow_env,
            work / "flow.log",
            on_start=(lambda pid: spies.append(py_spy(pid, work / "flow-profile.txt")))
            if args.profile
            else None,
        )
        mon.run()
        emu_cpu = tree_cpu_s(emu.pid) - emu_cpu0
        pf_cpu_exit = tree_cpu_s(prefect_proc.pid) - pf_cpu0 if prefect_proc else None
        for spy in spies:
            spy.wait(timeout=60)
        log = (work / "flow.log").read_text(errors="replace")
        if mon.returncode != 0:
            raise RuntimeError(f"voxlake run failed ({mon.returncode}):\n{log[-4000:]}")
        stats = httpx.get(f"{emu_url}/_voxlake/stats", timeout=10).json()
        items = server_transcripts(emu_url, key)

        if prefect_url is not None and counter is not None:
            counter.wait_for(expected, timeout_s=600)
            pf = asyncio.run(query_prefect(prefect_url, expected))
            pf |= counter.report(expected, mon.exit_wall)
            pf["server_cpu_s_during_flow"] = round(pf_cpu_exit or 0.0, 2)
            assert prefect_proc is not None
            pf["server_cpu_s_until_drained"] = round(tree_cpu_s(prefect_proc.pid) - pf_cpu0, 2)
        else:
            # The ephemeral server stopped with the flow process; read its database back.
            with _prefect_server(base, work) as (_, url):
                pf = asyncio.run(query_prefect(url, expected))
    result |= _figures(args, mon, log, stats, items, pf, durs, work, emu_cpu)
    if args.profile:
        result["profile"] = summarize_profile(work / "flow-profile.txt")
    if not args.keep:
        shutil.rmtree(work / "uploads", ignore_errors=True)
    result["work_dir"] = str(work.relative_to(REPO))
    return result


@contextlib.contextmanager
def _prefect_server(base: dict[str, str], work: Path) -> Iterator[tuple[Any, str]]:
    port = free_port()
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--no-ui", "--analytics-off"]
    url = f"http://127.0.0.1:{port}/api"
    log = work / f"prefect-server-{port}.log"
    with background(cmd, base, log, f"{url}/health", "prefect server") as proc:
        yield proc, url


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


def _figures(
    args: argparse.Namespace,
    mon: ChildMonitor,
    log: str,
    stats: dict[str, Any],
    items: list[dict[str, Any]],
    pf: dict[str, Any],
    durs: list[float],
    work: Path,
    emu_cpu: float,
) -> dict[str, Any]:
    n = args.files
    m = re.search(r"(\d+)/(\d+) completed, (\d+) failed.*?([\d.]+) s\s*$", log, re.M | re.S)
    if m is None:
        raise RuntimeError(f"no summary line in the output of voxlake run:\n{log[-2000:]}")
    completed, failed, elapsed = int(m.group(1)), int(m.group(3)), float(m.group(4))
    bound = lower_bound(durs, args.processing_fixed, args.processing_per_audio, args.concurrency)
    by_route = stats["requests_by_route"]
    total_requests = sum(by_route.values())
    start, end = pf.get("flow_run_start"), pf.get("flow_run_end")
    phases = {
        "process_start_to_flow_run_start": start - mon.started_wall if start else None,
        "flow_run_duration": end - start if start and end else None,
        "flow_run_end_to_process_exit": mon.exit_wall - end if end else None,
    }
    tl = timeline(work / "out", items, start or mon.started_wall)
    return {
        "completed": completed,
        "failed": failed,
        "wall_s": round(mon.wall_s, 2),
        "flow_elapsed_s": elapsed,
        "files_per_s_flow": round(n / elapsed, 2),
        "files_per_s_wall": round(n / mon.wall_s, 2),
        "lower_bound_s": round(bound, 3),
        "makespan_over_bound": round(elapsed / bound, 1),
        "phases_s": {k: None if v is None else round(v, 2) for k, v in phases.items()},
        "timeline_s_from_flow_run_start": tl,
        "requests_total": total_requests,
        "requests_per_file": round(total_requests / n, 3),
        "requests_per_file_by_route": {k: round(v / n, 3) for k, v in sorted(by_route.items())},
        "minimum_requests_per_file": 3,
        "requests_by_status": stats["requests_by_status"],
        "rate_limited": stats["rate_limited"],
        "max_concurrent_processing": stats["max_concurrent_processing"],
        "client_cpu_s": round(mon.cpu_own_s, 2),
        "client_cpu_ms_per_file": round(1000 * mon.cpu_own_s / n, 1),
        "client_children_cpu_s": round(mon.cpu_children_s, 2),
        "client_peak_rss_mib": round(mon.peak_rss / 2**20, 1),
        "local_server_cpu_s": round(emu_cpu, 2),
        "client_cpu_s_in_flow_run": round(mon.cpu_at(end) - mon.cpu_at(start), 2)
        if start and end
        else None,
        "prefect_api": {k: v for k, v in pf.items() if k not in ("flow_run_start", "flow_run_end")},
    }


def table_row(r: dict[str, Any]) -> str:
    pf = r["prefect_api"]
    drain = pf.get("drain_after_exit_s")
    return (
        f"| {r['files']} | {r['concurrency']} | {r['prefect_mode']} | {r['files_per_s_flow']} "
        f"| {r['files_per_s_wall']} | {r['flow_elapsed_s']} | {r['wall_s']} "
        f"| {r['lower_bound_s']} | {r['makespan_over_bound']} | {r['requests_per_file']} "
        f"| {r['rate_limited']} | {r['max_concurrent_processing']} "
        f"| {pf.get('task_runs')} | {'n/a' if drain is None else drain} "
        f"| {r['client_cpu_ms_per_file']} | {r['client_peak_rss_mib']} |"
    )


TABLE_HEADER = (
    "| files | C | prefect | files/s (flow) | files/s (wall) | flow elapsed s | wall s | L s "
    "| elapsed/L | req/file | 429s | max conc. | task runs | drain s | client CPU ms/file "
    "| peak RSS MiB |\n|" + "---|" * 16
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=100, help="server's concurrent jobs")
    parser.add_argument("--prefect", choices=("server", "ephemeral"), default="server")
    parser.add_argument("--processing-fixed", type=float, default=0.2)
    parser.add_argument("--processing-per-audio", type=float, default=0.01)
    parser.add_argument("--min-duration", type=float, default=2.0)
    parser.add_argument("--max-duration", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=8000, help="WAV sample rate")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=None, help="default: the flow's own")
    parser.add_argument("--max-uploads", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="sample the flow with py-spy")
    parser.add_argument("--keep", action="store_true", help="keep the server's upload dir")
    parser.add_argument("--output", type=Path, default=None, help="results JSON path")
    args = parser.parse_args()

    result = run(args)
    suffix = "" if args.prefect == "server" and not args.profile else f"-{args.prefect}"
    suffix += "-profile" if args.profile else ""
    out = args.output or RESULTS / f"flow_throughput-{args.files}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print()
    print(TABLE_HEADER)
    print(table_row(result))
    print(f"\nwritten to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
