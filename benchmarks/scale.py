"""Issue 23's one-machine scale: peak RSS of a run against its size; 1M manifest rows resolved.

    uv run --locked python benchmarks/scale.py manifest1m        # 1,000,000 rows: <= 60 s
    uv run --locked python benchmarks/scale.py scale100k         # 10k / 30k / 100k items: <= 500 MB
    uv run --locked python benchmarks/scale.py scale100k --sizes 10000 30000 60000

``manifest1m`` writes ``results/manifest1m.json``; ``scale100k`` ``results/scale100k.json``;
both rewrite RESULTS.md (``benchmarks/report.py`` calls :func:`verdicts` and :func:`section`).
Method: README.md ("Scale: 100,000 items, 1,000,000 manifest rows").

- **manifest1m.** A CSV and a Parquet manifest of 1,000,000 ``https://`` rows (no request is
  made for a URL row: resolving one is parsing it), with a ``media_id`` on every row and an
  option column set on every 10th row (three distinct combinations), plus a CSV of 100,000
  local paths that exist (0.1-s WAVs: one stat each). Each is resolved and validated by
  :func:`voxlake.manifest.read_manifest` in a fresh process (``scale.py _resolve PATH``: the
  imports are timed apart, the process's ``VmHWM`` is its peak RSS), 3 times; then the whole
  ``voxlake run MANIFEST --dry-run`` once as a process (its temporary Prefect API included).
- **scale100k.** ``voxlake run`` over N tiny local WAVs (0.25 s, 8 kHz: one upload, submit and
  fetch each) against ``voxlake serve-local`` (scripted engine, 0.05 s per job, concurrency 500,
  a rate limit no run reaches), no Prefect server configured (``voxlake run`` starts its
  temporary API as a child process), peak RSS = the flow process's ``VmHWM`` sampled every 50 ms
  (``harness.ChildMonitor``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    REPO,
    WORK,
    ChildMonitor,
    ServerSpec,
    clean_env,
    local_server,
    server_stats,
)

MIB = 2**20
PY = sys.executable
MANIFEST_ROWS = 1_000_000
LOCAL_ROWS = 100_000
MANIFEST_MAX_S = 60.0
RSS_MAX_BYTES = 500e6
SCALE_SIZES = (10_000, 30_000, 100_000)
SCALE_CLIP_S = 0.25
# Jobs as short as the scripted engine allows a run to finish quickly; the rate limit and
# concurrency high enough that neither bounds it (the run's own pace is what is measured).
SCALE_SPEC = ServerSpec(
    concurrency=500, processing_fixed=0.05, processing_per_audio=0.0, rate_limit=10_000_000
)
#: Option cells of the every-10th rows (what a manifest that varies options per row has).
OPTION_ROWS = (
    {"speaker_labels": "true"},
    {"language_code": "de"},
    {"speaker_labels": "true", "language_code": "fr"},
)


# --- the manifests ----------------------------------------------------------------------------


def _url_rows(n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        row = {
            "source": f"https://media.example.com/calls/2026/{i % 12 + 1:02d}/call-{i:07d}.wav",
            "media_id": f"call-{i:07d}",
            "speaker_labels": "",
            "language_code": "",
        }
        if i % 10 == 0:
            row |= OPTION_ROWS[(i // 10) % len(OPTION_ROWS)]
        rows.append(row)
    return rows


def write_manifests(n: int = MANIFEST_ROWS, local: int = LOCAL_ROWS) -> dict[str, Path]:
    """The 1M-row CSV and Parquet manifests and the 100k-local-path CSV (cached in .work/)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from benchmarks.ledger_bench import write_tiny_media

    folder = WORK / f"manifest{n}"
    paths = {
        "csv": folder / "manifest.csv",
        "parquet": folder / "manifest.parquet",
        "local_csv": folder / f"local{local}.csv",
    }
    if all(p.exists() for p in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    rows = _url_rows(n)
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    # Parquet: a null is "not set", as an empty CSV cell; speaker_labels a boolean column.
    table = pa.table(
        {
            "source": [r["source"] for r in rows],
            "media_id": [r["media_id"] for r in rows],
            "speaker_labels": [True if r["speaker_labels"] else None for r in rows],
            "language_code": [r["language_code"] or None for r in rows],
        }
    )
    pq.write_table(table, paths["parquet"])
    media = folder / "media"
    if not media.exists():
        write_tiny_media(media, local, prefix="item")
    with paths["local_csv"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source"])
        writer.writerows([f"media/item-{i:06d}.wav"] for i in range(local))
    return paths


# --- one resolve, in a fresh process -----------------------------------------------------------


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _resolve_child(path: str, profile: str | None) -> None:
    """Child: import, then ``read_manifest(path)`` timed; prints one JSON line."""
    t0 = time.perf_counter()
    import voxlake.cli  # noqa: F401  (what a `voxlake run` process has imported before)
    from voxlake.manifest import read_manifest

    imported = time.perf_counter() - t0
    rss_before = _vm("VmRSS")
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    manifest = read_manifest(path)
    resolve_s, resolve_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    if profile:
        prof.disable()
        prof.dump_stats(profile)
    print(
        json.dumps(
            {
                "items": len(manifest.items),
                "invalid": len(manifest.invalid),
                "distinct_options": len({id(i.options) for i in manifest.items}),
                "import_s": round(imported, 2),
                "resolve_s": round(resolve_s, 2),
                # The machine is shared: CPU time is what the code costs, wall what it took here.
                "resolve_cpu_s": round(resolve_cpu_s, 2),
                "loadavg_1min": round(os.getloadavg()[0], 2),
                "rss_before_mib": round(rss_before / MIB, 1),
                "peak_rss_mib": round(_vm("VmHWM") / MIB, 1),
                "rss_after_mib": round(_vm("VmRSS") / MIB, 1),
            }
        )
    )


def measure_resolve(path: Path, runs: int = 3) -> dict[str, Any]:
    env = clean_env(ARROW_DEFAULT_MEMORY_POOL="system")  # as the `voxlake` command sets it
    out = []
    for _ in range(runs):
        done = subprocess.run(
            [PY, str(Path(__file__)), "_resolve", str(path)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    worst = max(out, key=lambda r: r["resolve_s"])
    return {
        "manifest": str(path.relative_to(REPO)),
        "runs": out,
        "worst_resolve_s": worst["resolve_s"],
        "median_resolve_s": statistics.median(r["resolve_s"] for r in out),
        "worst_peak_rss_mib": max(r["peak_rss_mib"] for r in out),
    }


def measure_dry_run(path: Path) -> dict[str, Any]:
    """``voxlake run MANIFEST --dry-run`` as a process, temporary Prefect API included."""
    work = WORK / f"dry-run-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    env = clean_env(PREFECT_HOME=str(work / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="0")
    cmd = [PY, "-m", "voxlake.cli", "run", str(path), "--output", str(work / "out")]
    cmd += ["--dry-run", "--no-progress"]
    mon = ChildMonitor(cmd, env, work / "run.log")
    mon.run()
    log = (work / "run.log").read_text(errors="replace")
    shutil.rmtree(work, ignore_errors=True)
    return {
        "command": "voxlake run " + str(path.relative_to(REPO)) + " --output OUT --dry-run",
        "returncode": mon.returncode,
        "wall_s": round(mon.wall_s, 2),
        "cpu_s": round(mon.cpu_own_s + mon.cpu_children_s, 2),
        "peak_rss_mib": round(mon.peak_rss / MIB, 1),
        "log_tail": log.strip().splitlines()[-6:],
    }


def manifest1m(runs: int = 3) -> dict[str, Any]:
    t0 = time.perf_counter()
    paths = write_manifests()
    made_s = round(time.perf_counter() - t0, 1)
    rows = {
        "csv (1,000,000 https rows)": measure_resolve(paths["csv"], runs),
        "parquet (1,000,000 https rows)": measure_resolve(paths["parquet"], runs),
        "csv (100,000 local paths)": measure_resolve(paths["local_csv"], runs),
    }
    return {
        "id": "manifest1m",
        "target": f"1,000,000 rows resolved and validated <= {MANIFEST_MAX_S:g} s",
        "setup": {
            "rows": MANIFEST_ROWS,
            "local_rows": LOCAL_ROWS,
            "columns": ["source", "media_id", "speaker_labels", "language_code"],
            "options": "every 10th row sets options (3 distinct combinations), the rest none",
            "manifests_write_s": made_s,
        },
        "resolve": rows,
        "dry_run": measure_dry_run(paths["csv"]),
        "met": all(r["worst_resolve_s"] <= MANIFEST_MAX_S for r in rows.values()),
    }


# --- scale100k ----------------------------------------------------------------------------------


def tiny_media(n: int) -> Path:
    """A folder of ``n`` 0.25-s WAVs (cached; 4 KB each), shared by every size up to ``n``.

    0.25 s: the shortest the local server transcribes (below 0.16 s a job fails as AssemblyAI's
    does, "Audio duration is too short").
    """
    from benchmarks.ledger_bench import tiny_wav_bytes

    folder = WORK / "scale-media"
    folder.mkdir(parents=True, exist_ok=True)
    data = tiny_wav_bytes(SCALE_CLIP_S)
    for i in range(n):
        path = folder / f"item-{i:06d}.wav"
        if not path.exists():
            path.write_bytes(data)
    return folder


def scale_run(n: int, media: Path, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """``voxlake run`` over the first ``n`` tiny WAVs; the flow process's peak RSS."""
    work = WORK / f"scale-{n}-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    manifest = work / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source"])
        writer.writerows([str(media / f"item-{i:06d}.wav")] for i in range(n))
    key = "bench-" + secrets.token_hex(8)
    # No PREFECT_API_URL: `voxlake run` starts its temporary Prefect API as a child process, as
    # for a user without a server; the flow process monitored is voxlake's alone either way.
    env = clean_env(PREFECT_HOME=str(work / "prefect-home"), **(extra_env or {}))
    with local_server(work, SCALE_SPEC, key) as (_, emu_url):
        env |= {"ASSEMBLYAI_BASE_URL": emu_url, "ASSEMBLYAI_API_KEY": key}
        cmd = [PY, "-m", "voxlake.cli", "run", str(manifest), "--output", str(work / "out")]
        cmd += ["--no-progress"]
        mon = ChildMonitor(cmd, env, work / "run.log")
        mon.run()
        stats = server_stats(emu_url)
    log = (work / "run.log").read_text(errors="replace")
    summary = [ln for ln in log.splitlines() if "completed" in ln.lower()][-3:]
    completed = _completed(summary)
    if mon.returncode == 0:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "items": n,
        "returncode": mon.returncode,
        "completed": completed,
        "lost": n - completed,
        "wall_s": round(mon.wall_s, 1),
        "cpu_s": round(mon.cpu_own_s + mon.cpu_children_s, 1),
        "peak_rss_mib": round(mon.peak_rss / MIB, 1),
        "requests": sum(stats["requests_by_route"].values()),
        "rate_limited_429": stats.get("rate_limited"),
        "summary": summary,
        "work": None if mon.returncode == 0 else str(work.relative_to(REPO)),
    }


def _completed(summary: list[str]) -> int:
    """Completed items, from the run's summary line ("N/M completed, ...")."""
    found = [m for line in summary if (m := re.search(r"(\d+)/\d+ completed", line))]
    return int(found[-1].group(1)) if found else 0


def _slope(runs: list[dict[str, Any]]) -> float | None:
    """Least-squares MiB per 10,000 items of the peak RSS."""
    if len(runs) < 2:
        return None
    xs = [r["items"] / 10_000 for r in runs]
    ys = [r["peak_rss_mib"] for r in runs]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    num = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return round(num / sum((x - mx) ** 2 for x in xs), 2)


def scale100k(sizes: list[int], extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    media = tiny_media(max(sizes))
    made_s = round(time.perf_counter() - t0, 1)
    runs = []
    for n in sizes:
        runs.append(scale_run(n, media, extra_env))
        print(json.dumps(runs[-1]), flush=True)
    return {
        "id": "scale100k",
        "target": "peak RSS of the flow process flat in the number of items, <= 500 MB",
        "setup": {
            "media": f"{SCALE_CLIP_S}-s WAVs (8 kHz mono 16-bit), local paths in a CSV manifest",
            "media_write_s": made_s,
            "server": dataclasses.asdict(SCALE_SPEC),
            "prefect": "no PREFECT_API_URL: the run's temporary Prefect API (a child process)",
            "env": extra_env or {},
        },
        "runs": runs,
        "slope_mib_per_10k": _slope(runs),
        "met": all(
            r["peak_rss_mib"] * MIB <= RSS_MAX_BYTES and r["lost"] == 0 and r["returncode"] == 0
            for r in runs
        )
        and 100_000 in sizes,
    }


# --- RESULTS.md -----------------------------------------------------------------------------


def _ok(met: bool) -> str:
    return "**met**" if met else "**missed**"


def verdicts(load: Any) -> list[str]:
    rows = []
    m = load("manifest1m")
    if m:
        for name, r in m["resolve"].items():
            rows.append(
                f"| 1M manifest | {name} resolved and validated (`read_manifest`, fresh process) "
                f"≤ {MANIFEST_MAX_S:g} s | worst of {len(r['runs'])}: {r['worst_resolve_s']} s "
                f"(CPU {max(x.get('resolve_cpu_s', 0) for x in r['runs'])} s at most), "
                f"peak RSS {r['worst_peak_rss_mib']} MiB "
                f"| {_ok(r['worst_resolve_s'] <= MANIFEST_MAX_S)} |"
            )
        d = m["dry_run"]
        rows.append(
            f"| 1M manifest | (reference: the whole `voxlake run --dry-run`, 1,000,000 CSV rows) "
            f"| {d['wall_s']} s, peak RSS {d['peak_rss_mib']} MiB "
            "| reported |"
        )
    s = load("scale100k")
    if s:
        for r in s["runs"]:
            rows.append(
                f"| 100k run | {r['items']:,} items: flow process peak RSS ≤ 500 MB, 0 lost "
                f"| {r['peak_rss_mib']} MiB, {r['lost']} lost, {r['wall_s']} s "
                f"| {_ok(r['peak_rss_mib'] * MIB <= RSS_MAX_BYTES and r['lost'] == 0)} |"
            )
        largest = max(s["runs"], key=lambda r: r["items"])
        if largest["items"] < 100_000 and s["slope_mib_per_10k"] is not None:
            projected = largest["peak_rss_mib"] + s["slope_mib_per_10k"] * (
                (100_000 - largest["items"]) / 10_000
            )
            rows.append(
                f"| 100k run | 100,000 items: flow process peak RSS ≤ 500 MB | not run here "
                f"(largest {largest['items']:,}); the slope projects ~{projected:.0f} MiB "
                "| **missed** |"
            )
        sizes = ", ".join(f"{r['items']:,}" for r in s["runs"])
        rows.append(
            f"| 100k run | peak RSS flat in the number of items ({sizes}) "
            f"| slope {s['slope_mib_per_10k']} MiB per 10,000 items | {_ok(s['met'])} |"
        )
    return rows


def section(load: Any) -> list[str]:
    if not (load("scale100k") or load("manifest1m")):
        return []
    lines = ["## Scale: 100,000 items, 1,000,000 manifest rows (`scale.py`)", ""]
    for name in ("manifest1m-before", "manifest1m"):
        r = load(name)
        if not r:
            continue
        label = r.get("label") or "latest"
        lines += [
            f"**{label}** (`{name}.json`, finished {r['finished_at']}, load "
            f"{r['machine']['loadavg_at_save']}): {r['setup']['options']}. Each resolve is a "
            "fresh process; CPU is the resolve's own (the machine is shared: wall time follows "
            "the load).",
            "",
            "| manifest | run | import s | resolve s (wall) | resolve CPU s | load | peak RSS MiB "
            "| items | distinct options |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name_, x in r["resolve"].items():
            for k, run in enumerate(x["runs"]):
                lines.append(
                    f"| {name_} | {k + 1} | {run['import_s']} | {run['resolve_s']} "
                    f"| {run.get('resolve_cpu_s', '')} | {run.get('loadavg_1min', '')} "
                    f"| {run['peak_rss_mib']} | {run['items']:,} | {run['distinct_options']} |"
                )
        d = r["dry_run"]
        lines += [
            "",
            f"`{d['command']}`: exit {d['returncode']}, {d['wall_s']} s wall, {d['cpu_s']} s "
            f"CPU, peak RSS {d['peak_rss_mib']} MiB.",
            "",
        ]
    for name in ("scale100k", "scale100k-arena2"):
        r = load(name)
        if not r:
            continue
        env = r["setup"].get("env") or {}
        lines += [
            f"**{r.get('label') or 'latest'}** (`{name}.json`): `voxlake run` over N tiny WAVs "
            f"({r['setup']['prefect']}; environment {env or 'as is'}; finished "
            f"{r['finished_at']}, load {r['machine']['loadavg_at_save']}):",
            "",
            "| items | exit | completed | lost | wall s | CPU s | peak RSS MiB | requests | 429s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for x in r["runs"]:
            lines.append(
                f"| {x['items']:,} | {x['returncode']} | {x['completed']:,} | {x['lost']} "
                f"| {x['wall_s']} | {x['cpu_s']} | {x['peak_rss_mib']} | {x['requests']} "
                f"| {x['rate_limited_429']} |"
            )
        lines += ["", f"Slope: {r['slope_mib_per_10k']} MiB of peak RSS per 10,000 items.", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=("manifest1m", "scale100k", "_resolve"))
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SCALE_SIZES))
    parser.add_argument("--runs", type=int, default=3, help="manifest1m: resolves per manifest")
    parser.add_argument("--label", help="what this result measures (e.g. the code before a fix)")
    parser.add_argument("--out", help="results/<OUT>.json instead of the benchmark's id")
    parser.add_argument(
        "--env", action="append", default=[], help="scale100k: KEY=VALUE for the run (repeatable)"
    )
    parser.add_argument("--profile", help="_resolve: write a cProfile dump here")
    args = parser.parse_args()
    if args.which == "_resolve":
        _resolve_child(args.rest[0], args.profile)
        return
    from benchmarks.bench import save
    from benchmarks.harness import compile_project
    from benchmarks.report import write_results

    compile_project()
    env = dict(item.split("=", 1) for item in args.env)
    result = manifest1m(args.runs) if args.which == "manifest1m" else scale100k(args.sizes, env)
    if args.label:
        result["label"] = args.label
    if args.out:
        result["id"] = args.out
    save(result)
    write_results()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
