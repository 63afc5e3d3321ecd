"""End-to-end: the Prefect flow over data/manifest.csv against the local server's sphinx engine.

Real speech (Festival voices) in six containers, recognised by PocketSphinx; the transcripts are
scored against the reference texts with jiwer (data/wer_report.py, the same code `make demo`
prints with).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from data.wer_report import build_report
from voxlake.emulator import LocalServer
from voxlake.flows.transcribe import transcribe_manifest
from voxlake.lake.read import read_table

pytestmark = [pytest.mark.sphinx, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

MANIFEST = Path(__file__).resolve().parents[3] / "data" / "manifest.csv"
MAX_WER = 0.25


def test_corpus_flow_wer_confidence_and_edge_cases(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    api(make_server(engine="sphinx", concurrency_limit=5))
    out = tmp_path / "out"

    state = asyncio.run(
        transcribe_manifest(manifest=str(MANIFEST), output=str(out), return_state=True)
    )
    assert state.is_completed()

    rows = {r["media_id"]: r for r in read_table(out, "transcripts").to_pylist()}
    clips = [m for m in rows if m.startswith("harvard-")]
    assert len(clips) == 10
    for media_id in clips:  # every container decoded and was recognised
        row = rows[media_id]
        assert row["status"] == "completed", (media_id, row["error"])
        assert row["speech_model"].startswith("pocketsphinx-")
        assert row["language_code"] == "en_us"
        assert row["word_count"] > 20
    # Edge cases: silence completes empty; 100 ms gets AssemblyAI's error; the text file is
    # refused by the client before upload.
    assert rows["silence"]["status"] == "completed"
    assert rows["silence"]["text"] == "" and rows["silence"]["word_count"] == 0
    assert rows["too-short"]["status"] == "error"
    assert rows["too-short"]["error"] == "Audio duration is too short."
    assert rows["not-really-audio"]["status"] == "error"
    assert "looks like plain text" in rows["not-really-audio"]["error"]

    report = build_report(out, MANIFEST)
    per_file = {r["media_id"]: round(r["wer"], 3) for r in report.rows}
    print(f"overall WER {report.overall_wer:.4f}; per file {per_file}")
    print(
        f"confidence: matched {report.matched_confidence:.4f} ({report.matched_words} words), "
        f"unmatched {report.unmatched_confidence:.4f} ({report.unmatched_words} words)"
    )
    assert len(report.rows) == 10
    assert report.overall_wer <= MAX_WER
    # Confidence comes from the recogniser's lattice: right words score higher than wrong ones.
    assert report.matched_words > 300 and report.unmatched_words > 50
    assert report.matched_confidence > report.unmatched_confidence + 0.2
