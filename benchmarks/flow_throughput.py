"""Flow throughput benchmark: files/s, requests per file and Prefect task runs of `voxlake run`.

A measurement, not a test. Everything runs as separate processes, as a user would run them::

    uv run python benchmarks/flow_throughput.py --files 500 --concurrency 100
    uv run python benchmarks/flow_throughput.py --files 2000 --concurrency 100

1. N small synthetic WAVs (8 kHz, seeded durations of 2-10 s) and a manifest CSV are written
   under ``benchmarks/.work/`` (cached between runs with the same parameters).
2. ``voxlake serve-local`` starts as its own process (concurrency C, processing time
   ``fixed + per_audio x duration`` per job), readiness polled on ``/_voxlake/stats``.
3. ``--prefect server`` (default): a ``prefect server start`` process with a fresh SQLite
   database in the work dir; the run is a flow run there. ``--prefect none``: no Prefect API is
   configured, so ``voxlake run`` runs its job in its own process (no task runs to count).
4. ``python -m voxlake.cli run MANIFEST --output DIR --no-progress`` runs with
   ``ASSEMBLYAI_BASE_URL`` / ``ASSEMBLYAI_API_KEY`` in its environment. Measured: wall time of the
   command, the run's own elapsed (its summary line), its CPU seconds (own, and separately its
   child processes) and its peak RSS (``VmHWM``).
5. Afterwards: the local server's stats (requests by route, 429s, max concurrent processing),
   the Prefect task runs of the flow run and how long the Prefect server took to record them all
   in a final state after the command exited (drain), and a timeline from the Parquet output, the
   server's transcript list and the task runs.

Results go to ``benchmarks/.work/flow_throughput-<files>[-<mode>].json`` (``results/`` holds the
suite's only); a markdown table row is printed. ``--profile`` samples the flow process with
py-spy (``uv run --with py-spy python benchmarks/flow_throughput.py --profile ...``) and prints
where its CPU time goes; profiled runs are slower, so their throughput is not the benchmark
figure.

The physical lower bound of the makespan is ``L = max(sum(p_i) / C, max(p_i))`` with
``p_i = fixed + per_audio x duration_i``: no client can finish before the server has processed
every job at full concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import (
    REPO,
    STAGES,
    USER_PREFECT_HOME,
    WORK,
    ChildMonitor,
    TaskRunCounter,
    background,
    free_port,
    lower_bound,
    make_media,
    prefect_server,
    py_spy,
    query_prefect,
    server_transcripts,
    summarize_profile,
    timeline,
    tree_cpu_s,
)

# --- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from voxlake.run.chunks import auto_chunk_size, plan_chunks

    n = args.files
    # B6 (bench.py) brings its own manifest (a folder), the durations of the items this run
    # submits (n of them) and an output root that already holds a ledger.
    manifest = getattr(args, "manifest", None)
    if manifest is not None:
        durs = args.durations
    else:
        manifest, durs = make_media(
            n,
            args.seed,
            args.min_duration,
            args.max_duration,
            args.rate,
            getattr(args, "media", "synth"),
        )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = WORK / f"run-{n}-{args.prefect}-{stamp}"
    work.mkdir(parents=True)
    output = getattr(args, "output_dir", None) or work / "out"
    key = "bench-" + secrets.token_hex(8)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ASSEMBLYAI_"))}
    home = work / "prefect-home"
    template = getattr(args, "prefect_home_template", None)
    if template is not None:  # a PREFECT_HOME that has seen a Prefect server start before
        home = USER_PREFECT_HOME
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(template, home)
    base |= {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "0"}
    py = sys.executable

    emu_port = free_port()
    emu_cmd = [py, "-m", "voxlake.cli", "serve-local", "--port", str(emu_port)]
    emu_cmd += ["--concurrency", str(args.concurrency), "--engine", "scripted"]
    emu_cmd += ["--processing-fixed", str(args.processing_fixed)]
    emu_cmd += ["--processing-per-audio", str(args.processing_per_audio)]
    emu_cmd += ["--upload-dir", str(work / "uploads"), "--log-level", "WARNING"]
    emu_url = f"http://127.0.0.1:{emu_port}"
    chunk = args.chunk_size or auto_chunk_size(n)
    chunks = plan_chunks([str(i) for i in range(n)], args.chunk_size, args.max_uploads)
    expected = len(STAGES) * len(chunks)

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
            prefect_proc, prefect_url = stack.enter_context(prefect_server(base, work))
            flow_env["PREFECT_API_URL"] = prefect_url
            # A server a scheduled run meets has served its worker's clients. The first
            # GET /admin/version a fresh server answers takes ~0.3 s (0.004 s after), and every
            # Prefect client's first call is that version check: paid once per server, not per run.
            httpx.get(f"{prefect_url}/admin/version", timeout=60).raise_for_status()
            counter = TaskRunCounter(prefect_url).start()
        flow_cmd = [py, "-m", "voxlake.cli", "run", str(manifest), "--output", str(output)]
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
            pf = {}  # in-process: nothing recorded in Prefect
    result |= _figures(args, mon, log, stats, items, pf, durs, output, emu_cpu)
    if args.profile:
        result["profile"] = summarize_profile(work / "flow-profile.txt")
    if not args.keep:
        shutil.rmtree(work / "uploads", ignore_errors=True)
    result["work_dir"] = str(work.relative_to(REPO))
    return result


def _figures(
    args: argparse.Namespace,
    mon: ChildMonitor,
    log: str,
    stats: dict[str, Any],
    items: list[dict[str, Any]],
    pf: dict[str, Any],
    durs: list[float],
    output: Path,
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
    tl = timeline(output, items, start or mon.started_wall)
    counts = re.search(
        r"(\d+) items? in the manifest: (\d+) new, (\d+) retried, (\d+) resumed, "
        r"(\d+) skipped as already done",
        log,
    )
    return {
        "completed": completed,
        "failed": failed,
        # The summary's first line counts the items this run worked on; its second the manifest.
        "manifest_items": int(counts.group(1)) if counts else int(m.group(2)),
        "new": int(counts.group(2)) if counts else None,
        "skipped_done": int(counts.group(5)) if counts else None,
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
    parser.add_argument("--prefect", choices=("server", "none"), default="server")
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
    out = args.output or WORK / f"flow_throughput-{args.files}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print()
    print(TABLE_HEADER)
    print(table_row(result))
    print(f"\nwritten to {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
