"""Every query in docs/analysts.md and docs/tables.md runs against demo-like output.

The ```sql blocks run statement by statement on a voxlake.lake.views connection (so both the
read_parquet queries and the view queries work) from a folder holding the output as ``output/``
(docs/analysts.md) and ``out/`` (docs/tables.md); each must return rows. The ```python blocks
that read the tables run too. The output: two runs over Harvard-sentence transcripts, like
`make demo` twice, with speaker labels on for some items and the demo's two failures.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tests.integration.test_views import write_ledger
from voxlake.emulator.harvard import H1
from voxlake.lake.views import connect
from voxlake.lake.writer import TableSink

REPO = Path(__file__).resolve().parent.parent.parent
DOCS = ["docs/analysts.md", "docs/tables.md"]
RUNS = [
    ("run-early", dt.date(2026, 11, 19), dt.datetime(2026, 11, 19, 9, tzinfo=dt.UTC), 0.3),
    ("run-late", dt.date(2026, 11, 20), dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC), 0.7),
]


def harvard_transcript(tid: str, sentence: str, base: float, speakers: bool) -> dict[str, Any]:
    tokens = sentence.split()
    words = [
        {
            "text": tok,
            "start": 400 * i,
            "end": 400 * i + 300,
            "confidence": round(base + (i % 5) / 20, 3),
            "speaker": ("A" if i < len(tokens) // 2 else "B") if speakers else None,
        }
        for i, tok in enumerate(tokens)
    ]
    utterances = None
    if speakers:
        half = len(tokens) // 2
        utterances = [
            {"text": " ".join(tokens[a:b]), "start": 400 * a, "end": 400 * (b - 1) + 300,
             "confidence": base, "speaker": s}
            for a, b, s in ((0, half, "A"), (half, len(tokens), "B"))
        ]  # fmt: skip
    return {
        "id": tid,
        "status": "completed",
        "text": sentence,
        "words": words,
        "utterances": utterances,
        "confidence": base + 0.1,
        "audio_duration": 0.4 * len(tokens),
        "language_code": "en_us",
        "speech_model_used": "pocketsphinx",
        # Speech understanding for the diarized items: a sentence per turn, a key phrase.
        "sentiment_analysis_results": [
            {"text": u["text"], "start": u["start"], "end": u["end"], "speaker": u["speaker"],
             "sentiment": mood, "confidence": base}
            for u, mood in zip(utterances or [], ("POSITIVE", "NEGATIVE"), strict=False)
        ] or None,
        "auto_highlights_result": {
            "status": "success",
            "results": [{"text": tokens[-1], "count": 1, "rank": 0.5,
                         "timestamps": [{"start": words[-1]["start"], "end": words[-1]["end"]}]}],
        } if speakers else None,
    }  # fmt: skip


def write_demo_runs(root: Path) -> None:
    for run, day, recorded, base in RUNS:
        with TableSink(root, flow_run_id=run, run_date=day) as sink:
            fields = {"options_hash": "h", "recorded_at": recorded}
            for i, sentence in enumerate(H1[:5]):
                media_id = f"harvard-{i + 1:02d}"
                transcript = harvard_transcript(f"{run}-{i}", sentence, base, speakers=i < 2)
                sink.add(media_id, transcript, source=f"/data/{media_id}.wav", **fields)
            sink.add(
                "too-short",
                {"id": f"{run}-short", "status": "error", "error": "Audio duration is too short."},
                source="/data/too-short.wav",
                **fields,
            )
            sink.add(
                "not-really-audio",
                None,
                source="/data/not-really-audio.mp3",
                error="upload: looks like plain text, not audio or video",
                **fields,
            )


def blocks(doc: str, language: str) -> list[str]:
    text = (REPO / doc).read_text()
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def sql_statements(doc: str) -> list[str]:
    out = []
    for block in blocks(doc, "sql"):
        out += [s.strip() for s in block.split(";") if s.strip() and not _only_comments(s)]
    return out


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    write_demo_runs(folder / "output")
    write_ledger(folder / "output")  # for the `ledger` view's queries
    (folder / "out").symlink_to(folder / "output")
    return folder


@pytest.fixture
def con(lake: Path, monkeypatch: pytest.MonkeyPatch) -> duckdb.DuckDBPyConnection:
    monkeypatch.chdir(lake)  # the docs use relative roots: output/ and out/
    return connect("output")


ALL_SQL = [(doc, i, sql) for doc in DOCS for i, sql in enumerate(sql_statements(doc))]


def test_the_docs_have_the_queries_this_test_runs() -> None:
    assert len(sql_statements("docs/analysts.md")) >= 7  # 2 examples + the 5 worked queries
    assert len(sql_statements("docs/tables.md")) >= 5


@pytest.mark.parametrize(("doc", "index", "sql"), ALL_SQL, ids=[f"{d}-{i}" for d, i, _ in ALL_SQL])
def test_every_sql_query_in_the_docs_returns_rows(
    con: duckdb.DuckDBPyConnection, doc: str, index: int, sql: str
) -> None:
    rows = con.sql(sql).fetchall()
    assert rows, f"{doc} query {index} returned nothing:\n{sql}"


def test_least_confident_items_of_the_latest_run_are_only_that_runs(
    con: duckdb.DuckDBPyConnection,
) -> None:
    queries = [
        s
        for _, _, s in ALL_SQL
        if "least confident items of the latest run" in s.splitlines()[0].lower()
    ]
    assert len(queries) >= 2  # analysts.md: the example and worked query 3
    latest = con.sql(
        "select media_id, round(confidence, 3) from transcripts "
        "where flow_run_id = 'run-late' and status = 'completed'"
    ).fetchall()
    for sql in queries:
        rows = con.sql(sql).fetchall()
        # Run "run-late" has the higher confidences: any earlier row would sort first.
        got = {(r[0], round(r[1], 3)) for r in rows}
        assert got == set(latest), sql


@pytest.mark.parametrize("doc", DOCS)
def test_python_reading_examples_run(lake: Path, monkeypatch: pytest.MonkeyPatch, doc: str) -> None:
    monkeypatch.chdir(lake)
    readers = [b for b in blocks(doc, "python") if "transcribe_manifest" not in b]
    assert readers
    for block in readers:
        namespace: dict[str, Any] = {}
        exec(compile(block, f"{doc} python block", "exec"), namespace)
        frames = [v for v in namespace.values() if hasattr(v, "shape") or hasattr(v, "num_rows")]
        assert frames and all(_rows(f) > 0 for f in frames), block


def _rows(data: Any) -> int:
    return int(data.num_rows if hasattr(data, "num_rows") else data.shape[0])
