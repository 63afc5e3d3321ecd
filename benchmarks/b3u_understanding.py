"""B3U: B3 with every speech-understanding feature on. 1,000 transcripts x 5,000 words, each
with sentiment, entities, chapters, key phrases, topics, content safety, PII redaction, speaker
labels and identification, into every table through ``TableSink`` (the run's writer)::

    uv run --locked python benchmarks/bench.py b3u
    uv run --locked python benchmarks/b3u_understanding.py --child 1000 5000   # one measurement

The results are computed once, by the local server's own methods
(:func:`voxlake.emulator.understanding.understand`, in the shapes the server returns), for a
5,000-word call, and that transcript is written 1,000 times under new ids: what is measured is
the sink (rows built from the result JSON, buffered, written as Parquet, transcripts last), not
the emulator. Targets: peak RSS ≤ 1 GB; rows per second, every table, reported. In a fresh
process, so ``ru_maxrss`` is this benchmark's own.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any

from benchmarks.harness import REPO, WORK
from tests.support.understanding import CALL

MIB = 2**20
PARAMS: dict[str, Any] = {
    "speaker_labels": True,
    "sentiment_analysis": True,
    "entity_detection": True,
    "auto_chapters": True,
    "auto_highlights": True,
    "iab_categories": True,
    "content_safety": True,
    "redact_pii": True,
    "redact_pii_policies": ["phone_number", "email_address"],
    "redact_pii_sub": "entity_name",
    "speech_understanding": {
        "request": {
            "speaker_identification": {"speaker_type": "name", "known_values": ["Sarah", "John"]}
        }
    },
}


def template(words: int) -> dict[str, Any]:
    """One completed transcript of ``words`` words with every feature's result."""
    from voxlake.emulator.engines import EngineResult, EngineWord
    from voxlake.emulator.understanding import EXTRA_KEY, understand

    tokens = (CALL.split() * (words // len(CALL.split()) + 1))[:words]
    timed, speaker = [], "A"
    for i, tok in enumerate(tokens):
        timed.append(EngineWord(tok, 300 * i, 300 * i + 250, 0.9, speaker))
        if tok.endswith((".", "?", "!")) and i % 3 == 0:
            speaker = "B" if speaker == "A" else "A"
    result = understand(EngineResult(timed, words * 0.3, "en_us", "universal"), PARAMS)
    ws = [asdict(w) for w in result.words]
    utterances: list[dict[str, Any]] = []
    for w in ws:  # speaker turns, as the server renders them
        if utterances and utterances[-1]["speaker"] == w["speaker"]:
            u = utterances[-1]
            u["text"] += " " + w["text"]
            u["end"] = w["end"]
        else:
            utterances.append(
                {"speaker": w["speaker"], "text": w["text"], "start": w["start"], "end": w["end"],
                 "confidence": 0.9}
            )  # fmt: skip
    return {
        "status": "completed",
        "text": " ".join(w["text"] for w in ws),
        "words": ws,
        "utterances": utterances,
        "confidence": 0.9,
        "audio_duration": words * 0.3,
        "language_code": "en_us",
        "speech_model_used": "universal",
        **{k: v for k, v in PARAMS.items() if k.startswith("redact_pii")},
        **result.extra[EXTRA_KEY],
    }


def child(transcripts: int, words: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from voxlake.lake.writer import TableSink

    pa.array([0])  # pyarrow's first conversion imports pandas (~1 s): not the sink's rate
    base = template(words)
    root = WORK / "b3u-out"
    shutil.rmtree(root, ignore_errors=True)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    spent = 0.0
    sink = TableSink(str(root), flow_run_id="bench", run_date=dt.date(2026, 1, 1))
    for t in range(transcripts):
        transcript = base | {"id": f"t{t:05d}"}
        t0 = time.perf_counter()
        sink.add(f"m{t:05d}", transcript, source=f"/media/m{t:05d}.wav", options_hash="x")
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    files = sink.close()
    spent += time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    rows = {
        table: sum(pq.ParquetFile(f.path).metadata.num_rows for f in written)
        for table, written in files.items()
    }
    total = sum(rows.values())
    results = total - rows["words"] - rows["utterances"] - rows["transcripts"]
    written_bytes = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    shutil.rmtree(root, ignore_errors=True)
    return {
        "transcripts": transcripts,
        "words_per_transcript": words,
        "rows": rows,
        "rows_total": total,
        "result_rows": results,
        "sink_seconds": round(spent, 3),
        "rows_per_s": round(total / spent),
        "transcripts_per_s": round(transcripts / spent, 1),
        "peak_rss_mib": round(peak / MIB, 1),
        "rss_before_sink_mib": round(baseline / MIB, 1),
        "parquet_files": {k: len(v) for k, v in files.items()},
        "parquet_mib": round(written_bytes / MIB, 1),
    }


def b3u(transcripts: int = 1000, words: int = 5000) -> dict[str, Any]:
    cmd = [sys.executable, str(REPO / "benchmarks" / "b3u_understanding.py"), "--child"]
    cmd += [str(transcripts), str(words)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    return {"id": "b3u", "rows": [json.loads(out.stdout.strip().splitlines()[-1])]}


def _ok(met: bool) -> str:
    return "**met**" if met else "**missed**"


def verdicts(load: Any) -> list[str]:
    """Rows of RESULTS.md's targets table (``load(name)`` reads ``results/<name>.json``)."""
    r = load("b3u")
    if not r:
        return []
    row = r["rows"][0]
    return [
        f"| B3U | peak RSS ≤ 1 GB, every understanding feature on | {row['peak_rss_mib']} MiB, "
        f"{row['rows_per_s']:,} rows/s | {_ok(row['peak_rss_mib'] * MIB <= 1e9)} |"
    ]


def section(load: Any) -> list[str]:
    r = load("b3u")
    if not r:
        return []
    row = r["rows"][0]
    per_table = ", ".join(f"{k} {v:,}" for k, v in row["rows"].items())
    return [
        "## B3U: 1,000 transcripts x 5,000 words, every understanding feature, into the tables",
        "",
        "| transcripts | rows (all tables) | result rows | sink seconds | rows/s | transcripts/s "
        "| peak RSS MiB | Parquet MiB |",
        "|---|---|---|---|---|---|---|---|",
        f"| {row['transcripts']} | {row['rows_total']:,} | {row['result_rows']:,} "
        f"| {row['sink_seconds']} | {row['rows_per_s']:,} | {row['transcripts_per_s']} "
        f"| {row['peak_rss_mib']} | {row['parquet_mib']} |",
        "",
        f"Rows per table: {per_table}.",
        "",
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        sys.path.insert(0, str(REPO))
        print(json.dumps(child(int(sys.argv[2]), int(sys.argv[3]))))
