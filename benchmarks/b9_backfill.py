"""B9: a backfill of 10,000 items on 4 process workers, one account at AssemblyAI's limits.

    uv run --locked python benchmarks/b9_backfill.py --database postgresql  # b9-postgresql.json
    uv run --locked python benchmarks/b9_backfill.py --database sqlite      # b9-sqlite.json
    uv run --locked python benchmarks/b9_backfill.py --database postgresql --items 500  # a check

Every part is the real thing, each its own process, as ``voxlake serve`` sets them up:

- **the account:** ``voxlake serve-local`` at AssemblyAI's limits (20,000 requests per 300 s,
  sliding) with B4's processing model (C = 200 concurrent jobs, p = 3 + 0.05 x duration) and
  B4's media (10,000 WAVs of 2-10 s; ``--items N`` takes the first N);
- **Prefect:** ``prefect server start`` on PostgreSQL (started as ``voxlake serve --database
  postgresql`` starts it, its files and port this run's own) or on its default SQLite; then
  ``voxlake serve --no-worker`` against it: the ``voxlake`` pool, the shared request limit at
  voxlake's default figures, the ``assemblyai`` credentials block (the key reaches the workers
  only through it) and ``prefect deploy --all``;
- **4 process workers:** ``prefect worker start --pool voxlake --limit 1``, so each takes one
  shard (``PREFECT_WORKER_QUERY_SECONDS=2``: a shard waits at most 2 s to be picked up);
- **the backfill:** ``flows/backfill.py``'s parent flow with the backfill deployment's
  parameters (4 shards, ``shared_budget='assemblyai-requests'``), run in its own process (it
  only starts the shards and waits; run on a worker it would hold a fifth slot). Makespan is
  that process's wall time, start to exit.

Measured against the targets (issue 23): makespan ≤ 1.10 x L; 0 responses of 429 (the server's
``/_voxlake/stats``); 0 lost (every item once, completed, in ``transcripts_current``); no
``rate_limit`` call of the shared budget that waited 5 s or more (``voxlake.ratelimit`` logs
each such call; the flow runs' output is in the workers' logs). Also: jobs submitted twice, the
shared limit's occupancy sampled every second, each shard's span, the load averages before and
after (the machine is shared).

**L**, the lower bound the account's limits allow for this work (as B7, ``harness.bounds``)::

    L = max( max(Σp / C, max p) + first upload ,  300 s x (ceil(3N / 20,000) - 1) )

the first term the processing bound, the second the rate bound: at least 3 requests per item
(upload, submit, fetch), at most 20,000 in any 300 s. For B4's 10,000 items: Σp/C = 165 s,
3N = 30,000, so L = 300 s (the rate binds). The shared limit's own floor is printed beside it:
a leaky bucket of ``limit`` slots leaking ``decay`` per second grants 3N slots no sooner than
``(3N - limit) / decay``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `voxlake` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import (
    FALLBACK_MARK,
    REPO,
    WORK,
    ChildMonitor,
    bounds,
    clean_env,
    compile_project,
    database_locked,
    local_server,
    make_media,
    prefect_database,
    prefect_server,
    prefect_worker,
    request_figures,
    server_stats,
    server_transcripts,
    slow_shared_waits,
    timeline,
)

ITEMS = 10_000
WORKERS = 4
TARGET_OVER_L = 1.10
WAIT_TARGET_S = 5.0
QUERY_S = 2  # PREFECT_WORKER_QUERY_SECONDS
DEADLINE_S = 40 * 60  # the backfill is stopped after this long: a hang must not hold the machine


def _manifest(items: int, work: Path) -> tuple[Path, list[float]]:
    """B4's media (cached), the first ``items`` rows as this run's manifest; their durations."""
    from benchmarks.bench import B4

    full, durs = make_media(B4.files, B4.seed, B4.lo, B4.hi, B4.rate, B4.kind)
    if items > B4.files:
        raise SystemExit(f"--items: at most {B4.files} (B4's media)")
    with full.open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:items]
    manifest = work / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["source", "media_id"])
        writer.writeheader()
        writer.writerows({**r, "source": str(full.parent / r["source"])} for r in rows)
    return manifest, durs[:items]


def _parent_child(manifest: str, output: str, shards: str) -> None:
    """The backfill parent flow, with the backfill deployment's parameters."""
    from flows.backfill import backfill
    from voxlake.serve import deployment_parameters

    params = deployment_parameters("backfill") | {
        "manifest": manifest,
        "output": output,
        "shards": int(shards),
    }
    result = asyncio.run(backfill(**params))
    print(json.dumps({k: v for k, v in result.items() if k != "shards"}))


class LimitSampler:
    """The shared limit's occupied slots, every second, from the Prefect API."""

    def __init__(self, api_url: str, name: str) -> None:
        self.url = f"{api_url}/v2/concurrency_limits/{name}"
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                # A loaded server that does not answer: the next sample.
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    active = int(http.get(self.url).json()["active_slots"])
                    self.samples.append((time.time(), active))
                self._stop.wait(1.0)

    def __enter__(self) -> LimitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, t0: float, limit: int, batch: int) -> dict[str, Any]:
        """Peak occupancy, and the samples (one a second, or slower when the server is slow
        to answer) in which it left less than one batch per worker free (a process asking
        then waits for the leak)."""
        full = [t - t0 for t, active in self.samples if active > limit - WORKERS * batch]
        return {
            "samples": len(self.samples),
            "peak_active_slots": max((a for _, a in self.samples), default=None),
            "samples_nearly_full": len(full),
            "first_nearly_full_s": round(full[0], 1) if full else None,
            "last_nearly_full_s": round(full[-1], 1) if full else None,
        }


def _voxlake_serve(env: dict[str, str], work: Path) -> str:
    """``voxlake serve --no-worker`` against the running API: pool, limit, block, deployments."""
    done = subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "serve", "--no-worker"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"voxlake serve --no-worker failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def _wait_workers(api_url: str, pool: str, n: int, deadline_s: float = 300) -> None:
    deadline = time.monotonic() + deadline_s
    with httpx.Client(timeout=30) as http:
        while time.monotonic() < deadline:
            try:
                found = http.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}).json()
                if sum(w.get("status") == "ONLINE" for w in found) >= n:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
    raise RuntimeError(f"{n} workers not online after {deadline_s:.0f} s")


def _flow_runs(api_url: str, t0: float) -> list[dict[str, Any]]:
    """The parent's and each shard's flow run: state, start and end in seconds from the
    backfill's start (the parent's process start)."""
    runs = httpx.post(f"{api_url}/flow_runs/filter", json={"limit": 50}, timeout=60).json()

    def at(stamp: str | None) -> float | None:
        return round(dt.datetime.fromisoformat(stamp).timestamp() - t0, 1) if stamp else None

    return sorted(
        (
            {
                "name": r["name"] if r["name"].startswith("backfill-shard-") else "parent",
                "state": r["state"]["type"],
                "start_s": at(r.get("start_time")),
                "end_s": at(r.get("end_time")),
            }
            for r in runs
        ),
        key=lambda r: str(r["name"]),
    )


def b9(database: str, items: int) -> dict[str, Any]:
    from benchmarks.bench import B4_SPEC, _first_upload_s, _key
    from voxlake.lake.read import read_current
    from voxlake.shared_budget import DEFAULT_FIGURES, LIMIT_NAME

    work = WORK / f"b9-{database}-{items}-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True)
    manifest, durs = _manifest(items, work)
    first = _first_upload_s(Path(_first_source(manifest)), B4_SPEC, work)
    b = bounds(durs, B4_SPEC, first)
    fig = DEFAULT_FIGURES
    shared_floor = max(0.0, (b["min_requests"] - fig.limit) / fig.decay_per_s)
    print(_formula(b, items, B4_SPEC, fig, shared_floor), flush=True)

    key = _key()
    base = clean_env(PREFECT_HOME=str(work / "prefect-home"))
    output = work / "lake"
    load_before = [round(x, 2) for x in os.getloadavg()]
    with (
        local_server(work, B4_SPEC, key) as (_, url),
        prefect_database(database, work, base) as server_env,
        prefect_server(server_env, work) as (_, api_url),
    ):
        client = base | {"PREFECT_API_URL": api_url}
        account = {"ASSEMBLYAI_API_KEY": key, "ASSEMBLYAI_BASE_URL": url}
        said = _voxlake_serve(client | account, work)
        worker_env = client | {"PREFECT_WORKER_QUERY_SECONDS": str(QUERY_S)}
        logs = [work / f"worker-{k}.log" for k in range(WORKERS)]
        with contextlib.ExitStack() as stack:
            for k, log in enumerate(logs):
                stack.enter_context(prefect_worker(worker_env, f"b9-worker-{k}", log))
            _wait_workers(api_url, "voxlake", WORKERS)
            parent = ChildMonitor(
                [sys.executable, __file__, "_parent", str(manifest), str(output), str(WORKERS)],
                client,
                work / "parent.log",
            )
            watchdog = threading.Timer(DEADLINE_S, lambda: parent.proc and parent.proc.kill())
            watchdog.start()
            with LimitSampler(api_url, LIMIT_NAME) as sampler:
                parent.run()
            watchdog.cancel()
            shards = _flow_runs(api_url, parent.started_wall)
        stats = server_stats(url)
        served = server_transcripts(url, key)
    load_after = [round(x, 2) for x in os.getloadavg()]

    worker_text = [log.read_text(errors="replace") for log in logs]
    parent_text = (work / "parent.log").read_text(errors="replace")
    if parent.returncode != 0:
        print(parent_text[-4000:], file=sys.stderr)
    view = read_current(output).select(["media_id", "status"]).to_pylist()
    ids = [r["media_id"] for r in view]
    completed = {r["media_id"] for r in view if r["status"] == "completed"}
    waits = sorted((w for t in worker_text for w in slow_shared_waits(t)), reverse=True)
    makespan = parent.wall_s
    creates = stats["requests_by_route"].get("transcript_create", 0)
    row = {
        "database": database,
        "items": items,
        "workers": WORKERS,
        "parent_returncode": parent.returncode,
        "makespan_s": round(makespan, 2),
        "L_s": b["L_s"],
        "makespan_over_L": round(makespan / b["L_s"], 3),
        "target_over_L": TARGET_OVER_L,
        "shared_limit_floor_s": round(shared_floor, 1),
        "in_view": len(ids),
        "in_view_distinct": len(set(ids)),
        "completed": len(completed),
        "lost": items - len(completed),
        "jobs_submitted": creates,
        "jobs_submitted_twice": max(0, creates - items),
        "rate_limit_waits_ge_5s": len(waits),
        "longest_rate_limit_wait_s": waits[0] if waits else None,
        "rate_limit_waits_s": waits[:20],
        "fell_back_to_local_share": [FALLBACK_MARK in t for t in worker_text],
        "server_database_locked": database_locked(work),
        "shared_limit": {
            "name": LIMIT_NAME,
            "limit": fig.limit,
            "slot_decay_per_second": fig.decay_per_s,
            "batch": fig.batch,
            **sampler.report(parent.started_wall, fig.limit, fig.batch),
        },
        "shards": shards,
        **request_figures(stats, items),
        "timeline_s": timeline(output, served, parent.started_wall),
        "parent_cpu_s": round(parent.cpu_own_s, 2),
        "parent_summary": parent_text.strip().splitlines()[-1] if parent_text.strip() else "",
        "load_before": load_before,
        "load_after": load_after,
        "bounds": b,
        "voxlake_serve_said": [ln for ln in said.splitlines() if "endpoint" in ln],
        "work_dir": str(work.relative_to(REPO)),
    }
    name = f"b9-{database}" if items == ITEMS else f"b9-{database}-{items}"
    return {
        "id": name,
        "setup": {
            "items": items,
            "media": "B4's: WAVs of 2-10 s, 8 kHz mono 16-bit noise, seed 1 (the first N)",
            "concurrency": B4_SPEC.concurrency,
            "processing": f"{B4_SPEC.processing_fixed} + {B4_SPEC.processing_per_audio} x d",
            "rate_limit": f"{B4_SPEC.rate_limit} per {B4_SPEC.rate_window_s:g} s",
            "workers": f"{WORKERS} x prefect worker start --limit 1, query every {QUERY_S} s",
            "prefect_database": database,
            "L_formula": "max(max(Σp/C, max p) + first upload, 300 s x (ceil(3N/20000) - 1))",
        },
        "rows": [row],
    }


def _first_source(manifest: Path) -> str:
    with manifest.open(newline="") as fh:
        return next(csv.DictReader(fh))["source"]


def _formula(b: dict[str, Any], n: int, spec: Any, fig: Any, floor: float) -> str:
    return (
        f"L = max(max(Σp/C, max p) + first upload, {spec.rate_window_s:g} s x "
        f"(ceil(3N/{spec.rate_limit}) - 1))\n"
        f"  = max(max({b['sum_p_s']}/{spec.concurrency}, {b['max_p_s']}) + "
        f"{b['first_upload_s']}, {spec.rate_window_s:g} x "
        f"{math.ceil(3 * n / spec.rate_limit) - 1}) = max({b['L_processing_s']}, "
        f"{b['L_rate_s']}) = {b['L_s']} s for N = {n}\n"
        f"shared limit's floor: (3N - limit) / decay = ({b['min_requests']} - {fig.limit}) / "
        f"{fig.decay_per_s:g} = {floor:.1f} s"
    )


# --- RESULTS.md -----------------------------------------------------------------------------


def _ok(met: bool) -> str:
    return "**met**" if met else "**missed**"


def verdicts(load: Any) -> list[str]:
    """Rows of RESULTS.md's targets table, for each full run (``results/b9-<database>.json``)."""
    rows = []
    for database in ("postgresql", "sqlite"):
        result = load(f"b9-{database}")
        if not result:
            continue
        r = result["rows"][0]
        what = f"B9 ({database})"
        rows += [
            f"| {what} | backfill of {r['items']:,} items on {r['workers']} process workers, "
            f"one account: makespan ≤ 1.10 x L | {r['makespan_s']} s = {r['makespan_over_L']} "
            f"x L (L = {r['L_s']} s; the shared limit's floor {r['shared_limit_floor_s']} s) "
            f"| {_ok(r['makespan_over_L'] <= TARGET_OVER_L and r['parent_returncode'] == 0)} |",
            f"| {what} | 0 responses of 429 | {r['rate_limited_429']} "
            f"| {_ok(r['rate_limited_429'] == 0)} |",
            f"| {what} | 0 lost (every item once in the current view) | {r['lost']} lost, "
            f"{r['in_view']} rows for {r['in_view_distinct']} items "
            f"| {_ok(r['lost'] == 0 and r['in_view'] == r['in_view_distinct'] == r['items'])} |",
            f"| {what} | no `rate_limit` wait ≥ 5 s | {r['rate_limit_waits_ge_5s']} waits ≥ 5 s"
            f", longest {r['longest_rate_limit_wait_s']} s "
            f"| {_ok(r['rate_limit_waits_ge_5s'] == 0)} |",
        ]
    return rows


def section(load: Any) -> list[str]:
    """RESULTS.md's B9 section: the full runs side by side, and the smaller checks."""
    names = ["b9-postgresql", "b9-sqlite"]
    names += [f"b9-{d}-{n}" for d in ("postgresql", "sqlite") for n in (500, 1000, 2000)]
    found = [(n, r) for n in names if (r := load(n))]
    if not found:
        return []
    lines = [
        "## B9: a backfill of 10,000 items on 4 process workers, one account",
        "",
        "`uv run --locked python benchmarks/b9_backfill.py --database postgresql` (then "
        "`--database sqlite`; `--items 500` for a check). Method: the module's doc. "
        "L = max(max(Σp/C, max p) + first upload, 300 s x (ceil(3N/20,000) - 1)): the lower "
        "bound the account's limits allow (C = 200, p = 3 + 0.05 x d, 20,000 requests / 300 s, "
        "3 requests per item). The shared limit's floor, (3N - limit) / decay, is what the "
        "Prefect limit at voxlake's default figures allows at best. The machine is shared with "
        "other sessions' work: load averages (1, 5, 15 min) before and after each run.",
        "",
        "| result (backfill's exit status) | items | makespan s | L s | makespan/L "
        "| shared floor s | 429s | lost "
        "| rows / distinct | jobs submitted twice | waits ≥ 5 s (longest s) | fell back "
        "| samples limit nearly full / all | `database is locked` | requests "
        "| load before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in found:
        r = result["rows"][0]
        lim = r["shared_limit"]
        lines.append(
            f"| `{name}` (exit {r['parent_returncode']}) | {r['items']:,} | {r['makespan_s']} "
            f"| {r['L_s']} "
            f"| {r['makespan_over_L']} | {r['shared_limit_floor_s']} | {r['rate_limited_429']} "
            f"| {r['lost']} | {r['in_view']} / {r['in_view_distinct']} "
            f"| {r['jobs_submitted_twice']} | {r['rate_limit_waits_ge_5s']} "
            f"({r['longest_rate_limit_wait_s']}) | {sum(r['fell_back_to_local_share'])} "
            f"| {lim['samples_nearly_full']} / {lim['samples']} "
            f"| {r.get('server_database_locked', '')} "
            f"| {r['requests_total']} "
            f"| {r['load_before']} → {r['load_after']} |"
        )
    pg, lite = load("b9-postgresql"), load("b9-sqlite")
    if pg and lite:
        a, b = pg["rows"][0], lite["rows"][0]
        lines += [
            "",
            f"PostgreSQL / SQLite makespan: {a['makespan_s']} / {b['makespan_s']} = "
            f"{a['makespan_s'] / b['makespan_s']:.3f}.",
        ]
    lines.append("")
    for name, result in found:
        r = result["rows"][0]
        shards = r["shards"]
        lines.append(
            f"- `{name}` (finished {result['finished_at']}): flow runs (s from start) "
            + ", ".join(f"{x['name']} {x['start_s']}-{x['end_s']} {x['state']}" for x in shards)
            + f"; timeline {r['timeline_s']}; longest waits {r['rate_limit_waits_s'][:5]}"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", default="b9", choices=("b9", "_parent"))
    parser.add_argument("rest", nargs="*")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--items", type=int, default=ITEMS, help="the first N of B4's media")
    args = parser.parse_args()
    if args.which == "_parent":
        _parent_child(*args.rest)
        return
    from benchmarks.bench import save
    from benchmarks.report import write_results

    compile_project()
    result = b9(args.database, args.items)
    save(result)
    write_results()
    print(json.dumps(result["rows"][0], indent=2, default=str))
    print(f"written to results/{result['id']}.json; RESULTS.md rewritten")


if __name__ == "__main__":
    main()
