"""The ``sentences`` and ``paragraphs`` tables: rows from AssemblyAI's own response shapes, the
same rows from what the run sets on a transcript, written before the ``transcripts`` rows, and
their invariants checked."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.support.reference import assemblyai
from voxlake.checks import find_violations
from voxlake.lake.tables import PARAGRAPHS_SCHEMA, SENTENCES_SCHEMA
from voxlake.lake.tables.paragraphs import paragraphs_batch
from voxlake.lake.tables.sentences import segment, sentences_batch
from voxlake.lake.writer import TableSink
from voxlake.models import ParagraphsResponse, SentencesResponse, Transcript

DAY = dt.date(2024, 5, 17)
RUN = "run-1"


def _spec(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        assemblyai("fixtures", "spec-examples", f"{name}.json").read_text()
    )
    return loaded


def _transcript(tid: str, n_words: int) -> Transcript:
    words = [
        {"text": f"w{i}.", "start": 100 * i, "end": 100 * i + 80, "confidence": 0.9}
        for i in range(n_words)
    ]
    return Transcript.model_validate(
        {"id": tid, "status": "completed", "audio_url": "https://x/a", "words": words}
    )


def test_rows_from_the_api_json_and_from_what_the_run_sets_on_a_transcript() -> None:
    raw = _spec("SentencesResponse")
    from_json = sentences_batch(
        [("m", {"id": "t1", "sentences": raw["sentences"]})], flow_run_id=RUN, run_date=DAY
    )
    assert from_json.schema.equals(SENTENCES_SCHEMA, check_metadata=True)
    rows = from_json.to_pylist()
    assert [(r["sentence_index"], r["start_ms"], r["end_ms"], r["word_count"]) for r in rows] == [
        (0, 250, 6350, 4),
        (1, 6500, 11050, 6),
    ]
    assert rows[0]["speaker"] is None and rows[0]["transcript_id"] == "t1"

    # What voxlake.run.extras does: the parsed response's segments, counted, on the model.
    transcript = _transcript("t1", 3)
    parsed = SentencesResponse.model_validate(raw)
    transcript.sentences = [segment(s) for s in parsed.sentences]  # type: ignore[attr-defined]
    from_model = sentences_batch([("m", transcript)], flow_run_id=RUN, run_date=DAY)
    assert from_model.to_pylist() == rows

    paragraphs = ParagraphsResponse.model_validate(_spec("ParagraphsResponse")).paragraphs
    transcript.paragraphs = [segment(p) for p in paragraphs]  # type: ignore[attr-defined]
    batch = paragraphs_batch([("m", transcript)], flow_run_id=RUN, run_date=DAY)
    assert batch.schema.equals(PARAGRAPHS_SCHEMA, check_metadata=True)
    assert batch.column("word_count").to_pylist() == [len(p.words) for p in paragraphs]
    # A transcript the run did not fetch them for has none.
    none = paragraphs_batch([("n", _transcript("t2", 3))], flow_run_id=RUN, run_date=DAY)
    assert none.num_rows == 0


def test_written_with_the_item_and_checked_by_the_invariants(tmp_path: Path) -> None:
    transcript = _transcript("t1", 2)
    transcript.sentences = [  # type: ignore[attr-defined]
        {"text": "w0.", "start": 0, "end": 80, "confidence": 0.9, "word_count": 1},
        {"text": "w1.", "start": 100, "end": 180, "confidence": 0.9, "word_count": 1},
    ]
    with TableSink(tmp_path, flow_run_id=RUN, run_date=DAY) as sink:
        sink.add("m", transcript, source="/a.wav", options_hash="h")
    assert find_violations(tmp_path) == []
    assert pq.read_table(tmp_path / "sentences").num_rows == 2
    assert pq.read_table(tmp_path / "paragraphs").num_rows == 0  # not fetched: empty, typed

    # Sentences of a transcript no completed row of that run describes, out of order.
    orphan = _transcript("t9", 1)
    orphan.sentences = [  # type: ignore[attr-defined]
        {"text": "x", "start": 50, "end": 10, "confidence": 1.5, "word_count": 1}
    ]
    batch = sentences_batch([("z", orphan)], flow_run_id="run-2", run_date=DAY)
    stray = tmp_path / "sentences" / f"run_date={DAY}" / "part-stray.parquet"
    pq.write_table(pa.Table.from_batches([batch]).drop_columns(["run_date"]), stray)
    violations = find_violations(tmp_path)
    assert any(v.startswith("sentences without a completed transcripts row") for v in violations)
    assert any(v.startswith("sentences: confidence outside [0, 1]") for v in violations)
    assert any(v.startswith("sentences: start_ms > end_ms") for v in violations)
