"""Status polls of a small run: requests per file of a 12-file `voxlake run` (docs/client.md).

A measurement, not a test. Each case: a fresh `voxlake serve-local` (scripted engine, its
default concurrency of 5) whose jobs take about as long as AssemblyAI's (``fixed + per_audio x
duration`` seconds: tens of seconds), then ``python -m voxlake.cli run`` on 12 WAVs of 5-60 s
with no ``PREFECT_API_URL`` (the temporary Prefect API a new user gets). Printed per case, from
the server's ``/_voxlake/stats`` and transcript list and the run's tables: requests per file
(every route), status polls (list requests, and direct GETs beyond one fetch per file), the
flow's elapsed time against the lower bound L, and how long after the server finished the last
job the run saw it::

    uv run --locked python benchmarks/poll_pacing.py            # the four cases, ~5 min
    uv run --locked python benchmarks/poll_pacing.py --cases 1  # the first only

Results go to ``benchmarks/.work/poll_pacing.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import (
    REPO,
    WORK,
    ServerSpec,
    clean_env,
    compile_project,
    local_server,
    lower_bound,
    make_media,
    server_stats,
    server_transcripts,
    timeline,
)

FILES = 12
CONCURRENCY = 5  # `voxlake serve-local`'s default, and the embedded server's
# (processing_fixed s, processing_per_audio s per audio s): AssemblyAI-like turnarounds.
CASES = [(3.0, 0.1), (10.0, 0.1), (3.0, 0.3), (10.0, 0.3)]


def case(fixed: float, per_audio: float) -> dict[str, Any]:
    manifest, durs = make_media(FILES, 1, 5.0, 60.0, 8000, "noise")
    work = WORK / f"poll-pacing-{time.strftime('%Y%m%d-%H%M%S')}"
    key = "bench-" + secrets.token_hex(8)
    spec = ServerSpec(CONCURRENCY, fixed, per_audio)
    with local_server(work, spec, key) as (_, url):
        env = clean_env(
            ASSEMBLYAI_BASE_URL=url,
            ASSEMBLYAI_API_KEY=key,
            PREFECT_HOME=str(work / "prefect-home"),
            COLUMNS="200",
        )
        output = work / "out"
        started = time.time()
        cmd = [sys.executable, "-m", "voxlake.cli", "run", str(manifest)]
        cmd += ["--output", str(output), "--no-progress", "--no-report"]
        done = subprocess.run(
            cmd,
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if done.returncode != 0:
            raise RuntimeError(f"voxlake run failed:\n{done.stdout}{done.stderr}")
        stats = server_stats(url)
        items = server_transcripts(url, key)
    found = re.search(r"(\d+)/\d+ completed.*?([\d.]+) s\s*$", done.stdout, re.M)
    assert found, done.stdout
    tl = timeline(output, items, started)
    by_route = stats["requests_by_route"]
    # server_transcripts above listed the jobs after the run: not the run's requests.
    lists = by_route.get("transcript_list", 0) - 1
    total = sum(by_route.values()) - 1
    return {
        "processing": f"{fixed:g} s + {per_audio:g} x audio",
        "completed": int(found.group(1)),
        "requests_per_file": round(total / FILES, 2),
        "list_requests": lists,
        "extra_gets": by_route.get("transcript_get", 0) - FILES,
        "flow_elapsed_s": float(found.group(2)),
        "lower_bound_s": round(lower_bound(durs, fixed, per_audio, CONCURRENCY), 1),
        "last_seen_after_last_server_completion_s": round(
            tl["last_client_seen_s"] - tl["last_server_completed_s"], 2
        ),
        "seen_after_server_completed_s": tl["seen_after_server_completed_s"],
        "by_route": by_route,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--cases", type=int, default=len(CASES), help="run the first N cases")
    args = parser.parse_args()
    compile_project()
    results = []
    print(
        "| processing | requests/file | list requests | extra GETs | flow s | L s "
        "| last job seen after its completion, s |\n|---|---|---|---|---|---|---|",
        flush=True,
    )
    for fixed, per_audio in CASES[: args.cases]:
        r = case(fixed, per_audio)
        results.append(r)
        print(
            f"| {r['processing']} | {r['requests_per_file']} | {r['list_requests']} "
            f"| {r['extra_gets']} | {r['flow_elapsed_s']} | {r['lower_bound_s']} "
            f"| {r['last_seen_after_last_server_completion_s']} |",
            flush=True,
        )
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "poll_pacing.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
