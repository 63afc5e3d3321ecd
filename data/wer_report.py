"""Word error rate of the demo's transcripts against the reference texts in data/.

Reads the Parquet output of ``voxlake run data/manifest.csv --output output`` (the current row
per ``media_id``: ``voxlake.lake.read.read_current``) and, for every item whose media has a
``<clip>.ref.txt`` beside it, prints the WER (jiwer), then the overall WER over those clips, the
mean word confidence of words that match the reference against words that do not, and the
outcome of the other items (the edge cases). Run:
``uv run python data/wer_report.py output [data/manifest.csv]``.

Texts are compared lower-cased, without punctuation (apostrophes kept: "it's" is one word).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jiwer

from voxlake.analytics_report import normalise
from voxlake.lake.read import read_current


def reference_for(source: Path) -> Path:
    return source.with_name(source.stem + ".ref.txt")


@dataclass
class Report:
    rows: list[dict[str, object]] = field(default_factory=list)  # one per clip with a reference
    others: list[dict[str, object]] = field(default_factory=list)  # items without a reference
    overall_wer: float = float("nan")
    matched_confidence: float = float("nan")
    unmatched_confidence: float = float("nan")
    matched_words: int = 0
    unmatched_words: int = 0


def build_report(root: str | Path, manifest: str | Path = "data/manifest.csv") -> Report:
    manifest = Path(manifest)
    transcripts = read_current(root, "transcripts").to_pandas()
    words = read_current(root, "words").select(["transcript_id", "word_index", "confidence"])
    words = words.to_pandas().sort_values(["transcript_id", "word_index"])
    conf_by_id = words.groupby("transcript_id")["confidence"].apply(list).to_dict()
    report = Report()
    refs: list[str] = []
    hyps: list[str] = []
    matched: list[float] = []
    unmatched: list[float] = []
    with manifest.open(newline="", encoding="utf-8") as fh:
        items = list(csv.DictReader(fh))
    by_id = {row["media_id"]: row for row in transcripts.to_dict("records")}
    for item in items:
        source = (manifest.parent / item["source"]).resolve()
        row = by_id.get(item["media_id"])
        ref_path = reference_for(source)
        if row is None or not ref_path.is_file() or row["status"] != "completed":
            report.others.append(
                {
                    "media_id": item["media_id"],
                    "status": None if row is None else row["status"],
                    "text": None if row is None else row["text"],
                    "error": None if row is None else row["error"],
                }
            )
            continue
        ref = normalise(ref_path.read_text(encoding="utf-8"))
        hyp = normalise(row["text"] or "")
        out = jiwer.process_words(ref, hyp)
        # Word confidences in transcript order line up with the normalised hypothesis words
        # (normalising never splits or merges the engine's words).
        confs = conf_by_id.get(row["transcript_id"], [])
        if len(confs) == len(hyp.split()):
            for chunk in out.alignments[0]:
                target = matched if chunk.type == "equal" else unmatched
                target.extend(confs[chunk.hyp_start_idx : chunk.hyp_end_idx])
        refs.append(ref)
        hyps.append(hyp)
        report.rows.append(
            {
                "media_id": item["media_id"],
                "format": source.suffix.lstrip("."),
                "seconds": row["audio_duration_s"],
                "words": len(ref.split()),
                "wer": out.wer,
                "confidence": row["confidence"],
                "text": row["text"],
            }
        )
    if refs:
        report.overall_wer = jiwer.wer(refs, hyps)
    report.matched_words, report.unmatched_words = len(matched), len(unmatched)
    if matched:
        report.matched_confidence = sum(matched) / len(matched)
    if unmatched:
        report.unmatched_confidence = sum(unmatched) / len(unmatched)
    return report


def main(root: str = "output", manifest: str = "data/manifest.csv") -> None:
    report = build_report(root, manifest)
    print("\nWord error rate against the reference transcripts (jiwer):")
    print(f"  {'media_id':<12} {'format':<6} {'audio':>6} {'words':>5} {'WER':>6} {'conf':>5}")
    for r in report.rows:
        print(
            f"  {r['media_id']:<12} {r['format']:<6} {r['seconds']:>5.0f}s {r['words']:>5} "
            f"{r['wer']:>6.1%} {r['confidence']:>5.2f}"
        )
    print(f"  overall WER {report.overall_wer:.1%} over {len(report.rows)} clips")
    print(
        f"  mean word confidence: {report.matched_confidence:.3f} for words matching the "
        f"reference ({report.matched_words}), {report.unmatched_confidence:.3f} for the others "
        f"({report.unmatched_words})"
    )
    if report.others:
        print("Items without a reference (edge cases):")
        for o in report.others:
            outcome = o["error"] if o["status"] == "error" else f"text={o['text']!r}"
            print(f"  {o['media_id']:<17} {o['status']}: {outcome}")


if __name__ == "__main__":
    main(*sys.argv[1:])
