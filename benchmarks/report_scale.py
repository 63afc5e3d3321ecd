"""`voxlake report` over 1,000,000 word rows: wall time and peak RSS of the CLI as a child process.

Target (issue 12): <= 10 s and <= 1 GB. The output root is generated with TableSink (the
writer voxlake runs use) in a temp folder: 1,000 transcripts of 1,000 words each, speaker labels
on (so the talk-time section has utterances), and 20 failed items, in one run. The report is
then made twice, as an analyst would: for the latest run (the default) and for a run_date
range, each both as this environment runs Python and with a bytecode cache; each time
`voxlake report` is a fresh process and its peak RSS is the child's
ru_maxrss (os.wait4), so nothing of this script counts.

Run: `uv run --locked python benchmarks/report_scale.py [--transcripts N --words N]`; writes
benchmarks/results/report_scale.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voxlake.lake.writer import TableSink

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
MIB = 1024 * 1024
VOCAB = [f"word{i}" for i in range(2000)]  # as B3 (benchmarks/bench.py)


def generate(root: Path, transcripts: int, words: int, run_date: dt.date) -> dict[str, int]:
    rng = random.Random(12)
    recorded = dt.datetime.combine(run_date, dt.time(9), tzinfo=dt.UTC)
    with TableSink(root, flow_run_id="bench-run", run_date=run_date) as sink:
        # ``transcripts`` completed items of ``words`` words each, and 1 failed item in 50 more.
        for t in range(transcripts + transcripts // 50):
            media_id = f"call-{t:05d}"
            fields: dict[str, Any] = {
                "source": f"/media/{media_id}.wav",
                "options_hash": "bench",
                "recorded_at": recorded,
            }
            if t >= transcripts:
                sink.add(media_id, None, error="upload failed: HTTP 500", **fields)
                continue
            ws = [
                {
                    "text": rng.choice(VOCAB),
                    "start": 300 * i,
                    "end": 300 * i + 250,
                    "confidence": rng.betavariate(5, 2),
                    "speaker": "AB"[(i // 40) % 2],
                }
                for i in range(words)
            ]
            utterances = [
                {
                    "text": " ".join(w["text"] for w in ws[u : u + 40]),
                    "start": ws[u]["start"],
                    "end": ws[min(u + 39, words - 1)]["end"],
                    "confidence": 0.8,
                    "speaker": ws[u]["speaker"],
                }
                for u in range(0, words, 40)
            ]
            transcript = {
                "id": f"t-{t:05d}",
                "status": "completed",
                "text": " ".join(w["text"] for w in ws),
                "words": ws,
                "utterances": utterances,
                "confidence": sum(w["confidence"] for w in ws) / words,
                "audio_duration": words * 0.3,
                "language_code": "en_us",
                "speech_model_used": "universal-2",
            }
            sink.add(media_id, transcript, **fields)
        files = sink.close()
    return {table: len(f) for table, f in files.items()}


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall time and peak RSS of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {stderr.decode()}")
    return {
        # The temp folder's name is this machine's, not the benchmark's: shown as <tmp>.
        "command": re.sub(r"/\S*voxlake-report-scale-[^/\s]+", "<tmp>", " ".join(cmd[1:])),
        "wall_s": round(wall, 2),
        "peak_rss_mib": round(usage.ru_maxrss * 1024 / MIB, 1),
        "user_cpu_s": round(usage.ru_utime, 2),
        "report": stdout.decode().strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=int, default=1000)
    parser.add_argument("--words", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS / "report_scale.json")
    args = parser.parse_args()
    day = dt.date(2026, 11, 20)
    tmp = Path(tempfile.mkdtemp(prefix="voxlake-report-scale-"))
    try:
        root = tmp / "output"
        t0 = time.perf_counter()
        files = generate(root, args.transcripts, args.words, day)
        generate_s = time.perf_counter() - t0
        voxlake = [sys.executable, "-m", "voxlake.cli", "report", str(root)]
        latest = [*voxlake, "--out", str(tmp / "latest.html")]
        date_range = [*voxlake, "--since", str(day), "--until", str(day), "--out",
                      str(tmp / "range.html")]  # fmt: skip
        # As this environment runs Python, then with a bytecode cache (what a normal install
        # has after the first import; this machine sets PYTHONDONTWRITEBYTECODE, so every
        # process compiles matplotlib, pandas, ... from source): one warm-up run writes it.
        runs = [measure(latest), measure(date_range)]
        cached_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        measure(latest, cached_env)
        cached = [measure(latest, cached_env), measure(date_range, cached_env)]
        for run in [*runs, *cached]:
            run["html_kib"] = round(Path(run.pop("report")).stat().st_size / 1024, 1)
        from voxlake.lake.views import connect

        with connect(root) as con:
            (word_rows,) = con.sql("SELECT count(*) FROM words").fetchall()[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "id": "report_scale",
        "target": "voxlake report over 1,000,000 word rows: <= 10 s and <= 1 GB",
        "transcripts": args.transcripts,
        "word_rows": word_rows,
        "parquet_files": files,
        "generate_s": round(generate_s, 1),
        "runs": runs,
        "runs_with_bytecode_cache": cached,
        "met": all(r["wall_s"] <= 10 and r["peak_rss_mib"] <= 1024 for r in [*runs, *cached]),
        "finished_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_1min_at_end": round(os.getloadavg()[0], 2),
            "python": platform.python_version(),
            "pythondontwritebytecode": bool(os.environ.get("PYTHONDONTWRITEBYTECODE")),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
