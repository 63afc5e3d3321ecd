"""B1's voxlake run (and B5, its client CPU per file) for two checkouts, alternating, same window.

The machines are shared and noisy, so a change is judged by ratios measured pair by pair, not by
absolute times from different hours. Each run is ``bench.py b5`` (B1's voxlake row alone: 2,000
WAVs against a fresh ``serve-local``, a temporary Prefect API, orchestration included) in that
checkout, with that checkout's own ``.venv``; the pairs alternate which goes first.

    python benchmarks/side_by_side.py --old /path/to/previous-main --new . --pairs 3

Writes ``benchmarks/results/b1-b5-side-by-side.json`` in the current checkout and prints every
run (the tail decides, so no run is dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
FIELDS = ("makespan_s", "makespan_over_L", "client_cpu_ms_per_file", "client_cpu_own_ms_per_file")


def run_b5(checkout: Path) -> dict[str, Any]:
    """One ``bench.py b5`` in ``checkout``; its B5 row, the commit and the load around it."""
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    before = os.getloadavg()
    subprocess.run(
        [str(checkout / ".venv/bin/python"), "benchmarks/bench.py", "b5"],
        cwd=checkout,
        check=True,
    )
    row = json.loads((checkout / "benchmarks/results/b5.json").read_text())["rows"][0]
    return {
        "commit": commit,
        **{k: row[k] for k in FIELDS},
        "loadavg_before": [round(x, 2) for x in before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="checkout of the previous main")
    parser.add_argument("--new", type=Path, required=True, help="checkout of the change")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    pairs: list[dict[str, Any]] = []
    for i in range(args.pairs):
        order = ("old", "new") if i % 2 == 0 else ("new", "old")
        pair = {label: run_b5(getattr(args, label).resolve()) for label in order}
        pair["ratio_new_over_old"] = {
            k: round(pair["new"][k] / pair["old"][k], 3) for k in FIELDS if pair["old"][k]
        }
        pairs.append(pair)
        print(json.dumps(pair), flush=True)
    ratios = {k: [p["ratio_new_over_old"][k] for p in pairs] for k in FIELDS}
    out = {
        "what": "bench.py b5 (B1's voxlake row) in two checkouts, alternating, same window",
        "pairs": pairs,
        "ratio_median": {k: statistics.median(v) for k, v in ratios.items() if v},
        "ratio_max": {k: max(v) for k, v in ratios.items() if v},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "b1-b5-side-by-side.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("ratio_median", "ratio_max")}, indent=1))


if __name__ == "__main__":
    main()
