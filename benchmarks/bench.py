"""The issue's benchmarks B1-B6 and the 100k ledger lookup, against the bounds; writes RESULTS.md.

One command per benchmark, and ``all``::

    uv run --group bench python benchmarks/bench.py b1   # 2,000 files: voxlake + 3 peers
    uv run --group bench python benchmarks/bench.py b2   # one 2 GiB upload: client peak RSS
    uv run --group bench python benchmarks/bench.py b3   # 1,000 x 5,000 words into Parquet
    uv run python benchmarks/bench.py b3u                # B3, every understanding feature on
    uv run --group bench python benchmarks/bench.py b4   # 10,000 files, C=200, Prefect server
    uv run --group bench python benchmarks/bench.py b5   # B1's voxlake run: CPU per file
    uv run --group bench python benchmarks/bench.py b7   # 2 x 1,000 files, one account
    uv run python benchmarks/bench.py b6                 # 10,000 items done + 100 new
    uv run python benchmarks/bench.py ledger100k         # the ledger lookup of 100,000 items
    uv run python benchmarks/bench.py b10                # one clip: time to first result
    uv run --group bench python benchmarks/bench.py all  # everything (``make bench``)
    uv run python benchmarks/bench.py report             # RESULTS.md from results/*.json

Each writes ``results/<id>.json`` and rewrites ``RESULTS.md`` from the latest JSON of every
benchmark. B5 is a figure of B1's voxlake run; ``b5`` alone runs only that peer. Method and
bounds: README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import psutil

from benchmarks.harness import (
    REPO,
    RESULTS,
    USER_PREFECT_HOME,
    WORK,
    ChildMonitor,
    ServerSpec,
    bounds,
    clean_env,
    compile_project,
    local_server,
    make_media,
    prefect_server,
    request_figures,
    server_stats,
)

BENCH = REPO / "benchmarks"
PY = sys.executable
MIB = 2**20

# B1 / B5: the setup. Durations are uniform in [5, 60] s from a fixed seed.
B1 = SimpleNamespace(files=2000, lo=5.0, hi=60.0, rate=8000, seed=1, kind="synth")
B1_SPEC = ServerSpec(concurrency=100, processing_fixed=3.0, processing_per_audio=0.05)
# Peers that cannot do 2,000 files within the suite's time budget run on the first N files.
SEED_GUIDE_FILES = 20
SDK_ASYNC_FILES = 120
# B4: the issue fixes only N and C. Same processing model as B1, shorter audio (2-10 s) to keep
# 10,000 WAVs near 1 GB on disk; the rate limit, not processing, then sets the bound.
B4 = SimpleNamespace(files=10_000, lo=2.0, hi=10.0, rate=8000, seed=1, kind="noise")
B4_SPEC = ServerSpec(concurrency=200, processing_fixed=3.0, processing_per_audio=0.05)
# B6: 10,000 items already done (0.1-s WAVs, history in 3 appends per 1,000 items: 30 event
# files) + 100 new (B1's first 100 files), B1's server.
B6 = SimpleNamespace(
    files=10_100, done=10_000, new=100, batch=1000, lo=5.0, hi=60.0, rate=8000, seed=1, kind="synth"
)
B6_SPEC = B1_SPEC
# The ledger lookup for 100,000 items: 3 events each, in 3 appends per 3,000 items (102 files).
LEDGER100K = SimpleNamespace(items=100_000, batch=3000)


def _ns(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def _key() -> str:
    return "bench-" + secrets.token_hex(8)


def _first_upload_s(path: Path, spec: ServerSpec, work: Path) -> float:
    """Time of one upload of ``path`` on a fresh server (the bound's '+ the first upload')."""
    key = _key()
    headers = {"authorization": key}
    with (
        local_server(work / "probe", spec, key) as (_, url),
        httpx.Client(base_url=url, headers=headers, timeout=60) as http,
    ):
        http.post("/v2/upload", content=b"warm-up").raise_for_status()
        t0 = time.perf_counter()
        http.post("/v2/upload", content=path.read_bytes()).raise_for_status()
        return time.perf_counter() - t0


def _prefect_home_template() -> Path:
    """A PREFECT_HOME as on a machine that has run Prefect before.

    One ``prefect server start`` at ``USER_PREFECT_HOME`` (where runs restore it) creates and
    migrates the SQLite database and registers the block types, memoised for that database URL.
    """
    home = WORK / "prefect-home-template"
    if not (home / "memo_store.toml").exists():
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(USER_PREFECT_HOME, ignore_errors=True)
        USER_PREFECT_HOME.mkdir(parents=True)
        with prefect_server(clean_env(PREFECT_HOME=str(USER_PREFECT_HOME)), WORK):
            pass
        shutil.copytree(USER_PREFECT_HOME, home)
    return home


# --- peers ------------------------------------------------------------------------------------


def run_peer(
    name: str,
    cmd: list[str],
    manifest: Path,
    durs: list[float],
    spec: ServerSpec,
    work: Path,
    first_upload_s: float,
) -> dict[str, Any]:
    """One peer process against a fresh local server; wall, CPU, RSS, requests, files lost."""
    key = _key()
    pwork = work / name
    out = pwork / "result.json"
    pwork.mkdir(parents=True, exist_ok=True)
    n = len(durs)
    with local_server(pwork, spec, key) as (_, url):
        env = clean_env(ASSEMBLYAI_BASE_URL=url, ASSEMBLYAI_API_KEY=key)
        mon = ChildMonitor([*cmd, str(manifest), "--out", str(out)], env, pwork / "client.log")
        mon.run()
        stats = server_stats(url)
    if mon.returncode != 0 or not out.exists():
        log = (pwork / "client.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"peer {name} failed ({mon.returncode}):\n{log}")
    peer = json.loads(out.read_text())
    b = bounds(durs, spec, first_upload_s)
    return {
        "peer": name,
        "files": n,
        "makespan_s": round(mon.wall_s, 2),
        "work_elapsed_s": peer.get("elapsed_s"),
        "makespan_over_L": round(mon.wall_s / b["L_s"], 3),
        "files_per_s": round(peer["returned"] / mon.wall_s, 2),  # files returned, not sent
        "returned": peer["returned"],
        "lost": n - peer["returned"],
        **request_figures(stats, n),
        "client_cpu_s": round(mon.cpu_own_s + mon.cpu_children_s, 2),
        "client_cpu_ms_per_file": round(1000 * (mon.cpu_own_s + mon.cpu_children_s) / n, 2),
        "client_peak_rss_mib": round(mon.peak_rss / MIB, 1),
        "bounds": b,
        "peer_report": {k: v for k, v in peer.items() if k != "traceback"},
    }


def run_voxlake(
    files: int,
    media: SimpleNamespace,
    spec: ServerSpec,
    prefect: str,
    first_upload_s: float,
    durs: list[float],
    manifest: Path | None = None,
    output: Path | None = None,
) -> dict[str, Any]:
    """``voxlake run`` as a user runs it, through flow_throughput's measured run.

    ``manifest`` / ``output`` (B6): a given manifest and an output root that may already hold a
    ledger; ``files`` and ``durs`` are then those of the items the run is expected to submit.
    """
    import flow_throughput

    args = _ns(
        files=files,
        concurrency=spec.concurrency,
        prefect=prefect,
        processing_fixed=spec.processing_fixed,
        processing_per_audio=spec.processing_per_audio,
        min_duration=media.lo,
        max_duration=media.hi,
        rate=media.rate,
        seed=media.seed,
        chunk_size=None,
        max_uploads=16,
        profile=False,
        keep=False,
        media=media.kind,
        prefect_home_template=_prefect_home_template(),
        manifest=manifest,
        durations=durs,
        output_dir=output,
    )
    r = flow_throughput.run(args)
    b = bounds(durs, spec, first_upload_s)
    own, children = r["client_cpu_s"], r["client_children_cpu_s"]
    pf = r["prefect_api"]
    return {
        "peer": f"voxlake run (Prefect {prefect})",
        "files": files,
        "makespan_s": r["wall_s"],
        "work_elapsed_s": r["flow_elapsed_s"],
        "makespan_over_L": round(r["wall_s"] / b["L_s"], 3),
        "flow_elapsed_over_L": round(r["flow_elapsed_s"] / b["L_s"], 3),
        "files_per_s": round(r["completed"] / r["wall_s"], 2),
        "returned": r["completed"],
        "lost": files - r["completed"],
        "manifest_items": r.get("manifest_items"),
        "new": r.get("new"),
        "skipped_done": r.get("skipped_done"),
        "requests_total": r["requests_total"],
        "requests_per_file": r["requests_per_file"],
        "requests_per_file_by_route": r["requests_per_file_by_route"],
        "requests_by_status": r["requests_by_status"],
        "rate_limited_429": r["rate_limited"],
        "max_concurrent_processing": r["max_concurrent_processing"],
        "client_cpu_s": round(own + children, 2),
        "client_cpu_ms_per_file": round(1000 * (own + children) / files, 2),
        "client_cpu_own_ms_per_file": round(1000 * own / files, 2),
        "prefect_server_child_cpu_s": children,
        # A separately running Prefect server's CPU while the flow ran (server mode only).
        "prefect_server_cpu_s": pf.get("server_cpu_s_during_flow"),
        "client_peak_rss_mib": r["client_peak_rss_mib"],
        "task_runs": pf.get("task_runs"),
        "task_runs_final": pf.get("task_runs_final"),
        "task_runs_expected": pf.get("task_runs_expected"),
        "drain_after_exit_s": pf.get("drain_after_exit_s"),
        "phases_s": r["phases_s"],
        "timeline_s": r["timeline_s_from_flow_run_start"],
        "bounds": b,
        "flow_throughput": r,
    }


# --- benchmarks -------------------------------------------------------------------------------


def b1(only_voxlake: bool = False) -> dict[str, Any]:
    manifest, durs = make_media(B1.files, B1.seed, B1.lo, B1.hi, B1.rate)
    work = WORK / f"b1-{time.strftime('%Y%m%d-%H%M%S')}"
    first = _first_upload_s(manifest.parent / "media/f00000.wav", B1_SPEC, work)
    rows = [run_voxlake(B1.files, B1, B1_SPEC, "none", first, durs)]
    if not only_voxlake:
        # For reference, not the target's setup: the same run reporting to a Prefect server that
        # is already up (as deployments and work pools have), so its start-up is not in the wall.
        rows.append(run_voxlake(B1.files, B1, B1_SPEC, "server", first, durs))
        sdk = [PY, str(BENCH / "peers" / "sdk_group.py")]
        seed = [PY, str(BENCH / "peers" / "seed_guide.py")]
        rows.append(
            run_peer(
                "sdk-transcribe_group",
                [*sdk, "--mode", "sync"],
                manifest,
                durs,
                B1_SPEC,
                work,
                first,
            )
        )
        k = SDK_ASYNC_FILES
        rows.append(
            run_peer(
                "sdk-async-transcribe_group",
                [*sdk, "--mode", "async", "--files", str(k)],
                manifest,
                durs[:k],
                B1_SPEC,
                work,
                first,
            )
        )
        k = SEED_GUIDE_FILES
        rows.append(
            run_peer(
                "seed-guide", [*seed, "--files", str(k)], manifest, durs[:k], B1_SPEC, work, first
            )
        )
    return {"id": "b1", "setup": _setup(B1, B1_SPEC), "rows": rows}


def b2(size_mib: int = 2048) -> dict[str, Any]:
    work = WORK / "b2"
    work.mkdir(parents=True, exist_ok=True)
    cmd = [PY, str(BENCH / "upload_memory.py"), "--size-mib", str(size_mib), "--workdir", str(work)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, check=True)
    r = json.loads(out.stdout)
    r["target_mib"] = 100
    r["baseline_rss_mib"] = round(r["baseline_rss_bytes"] / MIB, 1)
    r["peak_rss_mib"] = round(r["peak_rss_bytes"] / MIB, 1)
    return {"id": "b2", "rows": [r]}


def b3(transcripts: int = 1000, words: int = 5000) -> dict[str, Any]:
    """TableSink fed synthetic transcript dicts, in a fresh process (clean ru_maxrss)."""
    cmd = [PY, str(BENCH / "bench.py"), "_b3-child", str(transcripts), str(words)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, check=True)
    return {"id": "b3", "rows": [json.loads(out.stdout.strip().splitlines()[-1])]}


def _b3_child(transcripts: int, words: int) -> None:
    import datetime as dt
    import random

    import pyarrow as pa

    from voxlake.lake.writer import TableSink

    # pyarrow imports pandas the first time it converts a Python list (~1 s, once per process;
    # B1 and B5 count it in their start-up): not part of the sink's write rate.
    pa.array([0])
    rng = random.Random(3)
    vocab = [f"word{i}" for i in range(2000)]
    root = WORK / "b3-out"
    shutil.rmtree(root, ignore_errors=True)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    spent = 0.0
    sink = TableSink(str(root), flow_run_id="bench", run_date=dt.date(2026, 1, 1))
    for t in range(transcripts):
        ws = [
            {
                "text": rng.choice(vocab),
                "start": 300 * i,
                "end": 300 * i + 250,
                "confidence": rng.random(),
                "speaker": None,
            }
            for i in range(words)
        ]
        transcript = {
            "id": f"t{t:05d}",
            "status": "completed",
            "text": " ".join(w["text"] for w in ws),
            "words": ws,
            "confidence": 0.9,
            "audio_duration": words * 0.3,
            "language_code": "en_us",
            "speech_model_used": "universal-2",
        }
        t0 = time.perf_counter()
        sink.add(f"m{t:05d}", transcript, source=f"/media/m{t:05d}.wav", options_hash="x")
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    files = sink.close()
    spent += time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    n = transcripts * words
    written = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    print(
        json.dumps(
            {
                "transcripts": transcripts,
                "words": n,
                "sink_seconds": round(spent, 3),
                "words_per_s": round(n / spent),
                "peak_rss_mib": round(peak / MIB, 1),
                "rss_before_sink_mib": round(baseline / MIB, 1),
                "parquet_files": {k: len(v) for k, v in files.items()},
                "parquet_mib": round(written / MIB, 1),
            }
        )
    )
    shutil.rmtree(root, ignore_errors=True)


def b4() -> dict[str, Any]:
    manifest, durs = make_media(B4.files, B4.seed, B4.lo, B4.hi, B4.rate, B4.kind)
    work = WORK / f"b4-{time.strftime('%Y%m%d-%H%M%S')}"
    first = _first_upload_s(manifest.parent / "media/f00000.wav", B4_SPEC, work)
    row = run_voxlake(B4.files, B4, B4_SPEC, "server", first, durs)
    return {"id": "b4", "setup": _setup(B4, B4_SPEC), "rows": [row]}


def b6() -> dict[str, Any]:
    """10,000 items already done + 100 new: requests, wall time against L, the ledger lookup.

    The 10,000 are 0.1-s WAVs whose history (submitting, submitted, completed) is written with
    the ledger's own API (ledger_bench.write_history); the 100 new are B1's first 100 files
    (speech-like WAVs, 5-60 s, seed 1), copied into the same folder afterwards. The folder is
    the manifest, as for a nightly run over a growing folder. A control run submits the same
    100 files from a folder of their own into an empty output root, side by side.
    """
    from benchmarks.ledger_bench import measure_lookup, write_history, write_tiny_media

    work = WORK / f"b6-{time.strftime('%Y%m%d-%H%M%S')}"
    media, out = work / "media", work / "out"
    made_s = write_tiny_media(media, B6.done, prefix="done")
    history = write_history(media, out, batch=B6.batch)
    new_manifest, durs = make_media(B6.new, B6.seed, B6.lo, B6.hi, B6.rate)
    new_files = sorted((new_manifest.parent / "media").glob("*.wav"))
    control = work / "control" / "media"
    control.mkdir(parents=True)
    for f in new_files:
        shutil.copy(f, media / f"new-{f.name}")
        shutil.copy(f, control / f"new-{f.name}")
    lookup = measure_lookup(media, out)
    first = _first_upload_s(new_files[0], B6_SPEC, work)
    row = run_voxlake(B6.new, B6, B6_SPEC, "none", first, durs, manifest=media, output=out)
    row["peer"] = f"voxlake run: {B6.done:,} done + {B6.new} new"
    ctrl = run_voxlake(
        B6.new,
        B6,
        B6_SPEC,
        "none",
        first,
        durs,
        manifest=control,
        output=work / "control" / "out",
    )
    ctrl["peer"] = f"control: the {B6.new} new alone, empty output root"
    setup = _setup(B6, B6_SPEC) | {
        "files": B6.done + B6.new,
        "done": B6.done,
        "new": B6.new,
        "done_media": "0.1-s WAVs (8 kHz mono 16-bit)",
        "done_media_write_s": round(made_s, 1),
        "history": history,
    }
    return {"id": "b6", "setup": setup, "lookup": lookup, "rows": [row, ctrl]}


def ledger100k() -> dict[str, Any]:
    """The ledger lookup for 100,000 completed items, in ~100 event files and compacted."""
    from benchmarks.ledger_bench import compact, measure_lookup, write_history, write_tiny_media

    n = LEDGER100K.items
    media = WORK / f"ledger-media-n{n}"
    marker = WORK / f"ledger-media-n{n}.complete"
    made_s = None
    if not marker.exists():  # 100,000 0.1-s WAVs (~170 MB), cached
        shutil.rmtree(media, ignore_errors=True)
        made_s = round(write_tiny_media(media, n, prefix="item"), 1)
        marker.write_text("")
    work = WORK / f"ledger100k-{time.strftime('%Y%m%d-%H%M%S')}"
    out, compacted = work / "out", work / "out-compacted"
    history = write_history(media, out, batch=LEDGER100K.batch)
    in_files = measure_lookup(media, out)
    merged = compact(out, compacted)
    in_one = measure_lookup(media, compacted)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "id": "ledger100k",
        "setup": {
            "items": n,
            "media": "0.1-s WAVs (8 kHz mono 16-bit), a folder as the manifest",
            "media_write_s": made_s,
            "history": history,
            "compacted": merged,
        },
        "rows": [
            {"layout": f"{history['event_files']} event files", **in_files},
            {"layout": "compacted into 1 file", **in_one},
        ],
    }


def b5_from(b1_result: dict[str, Any]) -> dict[str, Any]:
    vox = b1_result["rows"][0]
    return {
        "id": "b5",
        "from": "b1 voxlake run",
        "rows": [
            {
                k: vox[k]
                for k in (
                    "peer",
                    "files",
                    "client_cpu_s",
                    "client_cpu_ms_per_file",
                    "client_cpu_own_ms_per_file",
                    "prefect_server_child_cpu_s",
                    "makespan_s",
                    "makespan_over_L",
                    "phases_s",
                )
            }
        ],
    }


def _setup(media: SimpleNamespace, spec: ServerSpec) -> dict[str, Any]:
    return {
        "files": media.files,
        "durations_s": [media.lo, media.hi],
        "seed": media.seed,
        "wav": f"{media.rate} Hz mono 16-bit",
        "concurrency": spec.concurrency,
        "processing_fixed_s": spec.processing_fixed,
        "processing_per_audio_s": spec.processing_per_audio,
        "rate_limit": f"{spec.rate_limit} per {spec.rate_window_s:g} s",
    }


# --- results ----------------------------------------------------------------------------------


def save(result: dict[str, Any]) -> None:
    result["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    result["machine"] = machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{result['id']}.json").write_text(json.dumps(result, indent=2) + "\n")


def machine() -> dict[str, Any]:
    import prefect

    with contextlib.suppress(OSError):
        model = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            "?",
        )
    return {
        "cpus": psutil.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        # The machine is shared: load averages (1, 5, 15 min) when the result was saved.
        "loadavg_at_save": [round(x, 2) for x in os.getloadavg()],
        # With PYTHONDONTWRITEBYTECODE set and no compiled site-packages, every process compiles
        # Prefect from source (~35 s more start-up for B1 on 2 loaded cores): make bench syncs
        # with --compile-bytecode.
        "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        "prefect_bytecode_compiled": Path(
            importlib.util.cache_from_source(prefect.__file__)
        ).exists(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "which",
        choices=(
            "b1",
            "b2",
            "b3",
            "b3u",
            "b4",
            "b5",
            "b6",
            "b7",
            "b10",
            "ledger100k",
            "all",
            "report",
            "_b3-child",
        ),
    )
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    if args.which == "_b3-child":
        _b3_child(int(args.rest[0]), int(args.rest[1]))
        return
    from benchmarks.report import write_results

    compile_project()

    t0 = time.perf_counter()
    if args.which in ("b1", "all"):
        r1 = b1()
        save(r1)
        save(b5_from(r1))
        write_results()
    if args.which == "b5":
        r1 = b1(only_voxlake=True)
        save(b5_from(r1))
    if args.which in ("b2", "all"):
        save(b2())
        write_results()
    if args.which in ("b3", "all"):
        save(b3())
        write_results()
    if args.which in ("b3u", "all"):  # benchmarks/b3u_understanding.py
        from benchmarks.b3u_understanding import b3u

        save(b3u())
        write_results()
    if args.which in ("b4", "all"):
        save(b4())
        write_results()
    if args.which in ("b6", "all"):
        save(b6())
        write_results()
    if args.which in ("ledger100k", "all"):
        save(ledger100k())
        write_results()
    if args.which in ("b7", "all"):  # benchmarks/b7_shared_budget.py
        from benchmarks.b7_shared_budget import b7

        save(b7())
    if args.which in ("b10", "all"):  # benchmarks/b10_first_result.py
        from benchmarks.b10_first_result import b10

        save(b10())
    if args.which == "all":
        total = {"total_s": round(time.perf_counter() - t0), "finished_at": time.strftime("%c")}
        (RESULTS / "suite.json").write_text(json.dumps(total) + "\n")
    write_results()
    print(f"{args.which}: {time.perf_counter() - t0:.0f} s; RESULTS.md rewritten")


if __name__ == "__main__":
    main()
