"""voxlake.lake (tables, writer, read, root) and voxlake.checks: exact schemas, batches,
atomic dataset writes, invariants.

Everything is written to real files under tmp_path and read back with pyarrow, DuckDB and pandas.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.support.reference import assemblyai
from voxlake.checks import TableInvariantError, check_invariants, find_violations
from voxlake.lake import root as lake_root
from voxlake.lake import tables
from voxlake.lake.read import read_table
from voxlake.lake.tables import (
    TRANSCRIPTS_SCHEMA,
    UTTERANCES_SCHEMA,
    WORDS_SCHEMA,
    transcript_row,
    transcripts_batch,
    utterances_batch,
    words_batch,
)
from voxlake.lake.writer import DatasetWriter, TableSink

DAY = dt.date(2024, 5, 17)
RUN = "run-1"
T0 = dt.datetime(2024, 5, 17, 9, 30, tzinfo=dt.UTC)


def make_transcript(tid: str, n_words: int, *, speakers: bool = False) -> dict[str, Any]:
    words = [
        {
            "text": f"w{i}",
            "start": 100 * i,
            "end": 100 * i + 80,
            "confidence": 0.5 + (i % 50) / 100,
            "speaker": ("A" if i % 7 < 4 else "B") if speakers else None,
        }
        for i in range(n_words)
    ]
    utterances = (
        [
            {"text": "first turn", "start": 0, "end": 350, "confidence": 0.9, "speaker": "A"},
            {"text": "second", "start": 400, "end": 600, "confidence": 0.8, "speaker": "B"},
        ]
        if speakers
        else None
    )
    return {
        "id": tid,
        "status": "completed",
        "audio_url": "https://cdn.example/upload/x",
        "text": " ".join(w["text"] for w in words),
        "words": words,
        "utterances": utterances,
        "confidence": 0.91,
        "audio_duration": 12,
        "language_code": "en_us",
        "speech_model_used": "universal-2",
    }


def sink_add(sink: TableSink, media_id: str, transcript: Any, **kw: Any) -> None:
    sink.add(
        media_id,
        transcript,
        source=f"/media/{media_id}",
        options_hash="0123456789abcdef",
        submitted_at=T0,
        completed_at=T0 + dt.timedelta(minutes=1),
        **kw,
    )


def write_run(root: Path, **sink_kw: Any) -> None:
    with TableSink(root, flow_run_id=RUN, run_date=DAY, **sink_kw) as sink:
        sink_add(sink, "a.wav", make_transcript("t-a", 5))
        sink_add(sink, "b.wav", make_transcript("t-b", 3, speakers=True), source_size=42)
        sink_add(sink, "c.wav", {"id": "t-c", "status": "error", "error": "Audio too short"})
        sink_add(sink, "d.wav", None, error="upload failed: HTTP 500")
        sink_add(sink, "e.wav", make_transcript("t-e", 0))


# --- schemas ---------------------------------------------------------------------------------


def test_schemas_are_explicit_and_documented() -> None:
    assert TRANSCRIPTS_SCHEMA.field("source_size").type == pa.int64()
    assert TRANSCRIPTS_SCHEMA.field("submitted_at").type == pa.timestamp("us", tz="UTC")
    assert TRANSCRIPTS_SCHEMA.field("run_date").type == pa.date32()
    assert WORDS_SCHEMA.field("word_index").type == pa.int32()
    assert WORDS_SCHEMA.field("start_ms").type == pa.int64()
    assert WORDS_SCHEMA.field("confidence").type == pa.float64()
    for schema in tables.SCHEMAS.values():
        for f in schema:
            assert f.metadata and f.metadata[b"description"], f"{f.name} has no description"


@pytest.mark.parametrize("doc_path", ["docs/tables.md"])
def test_documented_schemas_match_the_code(doc_path: str) -> None:
    doc = (Path(__file__).parent.parent.parent / doc_path).read_text()
    for name, schema in tables.SCHEMAS.items():
        assert tables.schema_markdown(schema) in doc, f"{doc_path} is stale for {name}"


# --- batches ---------------------------------------------------------------------------------


def test_words_batch_from_real_fixture_dict_and_model() -> None:
    raw = json.loads(assemblyai("fixtures", "go-sdk", "completed.json").read_text())
    batch = words_batch([("wildfires", raw)], flow_run_id=RUN, run_date=DAY)
    assert batch.schema.equals(WORDS_SCHEMA, check_metadata=True)
    assert batch.num_rows == len(raw["words"]) == 856
    row = batch.slice(0, 1).to_pylist()[0]
    assert row == {
        "media_id": "wildfires",
        "transcript_id": "TRANSCRIPT_ID",
        "word_index": 0,
        "text": "Smoke",
        "start_ms": 250,
        "end_ms": 650,
        "confidence": 0.73033,
        "speaker": None,
        "channel": None,  # absent in this fixture: still a typed string column
        "flow_run_id": RUN,
        "run_date": DAY,
    }
    from voxlake.models import Transcript

    model = Transcript.model_validate(raw)
    assert words_batch([("wildfires", model)], flow_run_id=RUN, run_date=DAY).equals(batch)


def test_all_null_and_empty_columns_keep_their_types() -> None:
    empty = words_batch([("m", {"id": "t", "words": []})], flow_run_id=RUN, run_date=DAY)
    assert empty.num_rows == 0 and empty.schema.equals(WORDS_SCHEMA)
    none = utterances_batch([("m", {"id": "t", "utterances": None})], flow_run_id=RUN, run_date=DAY)
    assert none.num_rows == 0 and none.schema.equals(UTTERANCES_SCHEMA)
    odd_word = {"text": "x", "start": 1, "end": 2, "confidence": 1, "channel": 2}
    odd = words_batch([("m", {"id": "t", "words": [odd_word]})], flow_run_id=RUN, run_date=DAY)
    assert odd.column("channel").to_pylist() == ["2"]


def test_spec_example_utterances() -> None:
    raw = json.loads(assemblyai("fixtures", "spec-examples", "Transcript.json").read_text())
    batch = utterances_batch([("x", raw)], flow_run_id=RUN, run_date=DAY)
    assert batch.schema.equals(UTTERANCES_SCHEMA)
    assert batch.num_rows == len(raw["utterances"])
    assert batch.column("speaker").to_pylist()[0] == "A"
    assert batch.column("utterance_index").to_pylist() == list(range(batch.num_rows))


def test_one_batch_for_many_transcripts_equals_one_per_transcript() -> None:
    from voxlake.models import Transcript

    items = [
        ("a", make_transcript("t-a", 5, speakers=True)),
        ("b", Transcript.model_validate(make_transcript("t-b", 3))),  # a model among dicts
        ("c", make_transcript("t-c", 0)),
        ("d", make_transcript("t-d", 4, speakers=True)),
    ]
    for build in (words_batch, utterances_batch):
        together = build(items, flow_run_id=RUN, run_date=DAY)
        one_by_one = [build([item], flow_run_id=RUN, run_date=DAY) for item in items]
        assert together.equals(pa.concat_batches(one_by_one))
    index = words_batch(items, flow_run_id=RUN, run_date=DAY).column("word_index").to_pylist()
    assert index == [*range(5), *range(3), *range(4)]  # each transcript's words from 0


def test_a_malformed_transcript_fails_alone_and_the_others_are_written(tmp_path: Path) -> None:
    too_late = make_transcript("t-x", 3)
    too_late["words"][1]["start"] = 2**64  # no int64 column holds it
    entries = [
        ("a.wav", make_transcript("t-a", 5, speakers=True)),
        ("x.wav", too_late),
        ("b.wav", {"id": "t-b", "status": "error", "error": "Audio too short"}),
        ("y.wav", {**make_transcript("t-y", 2), "id": ""}),
        ("c.wav", None),
        ("d.wav", make_transcript("t-d", 4)),
    ]
    with TableSink(tmp_path, flow_run_id=RUN, run_date=DAY) as sink:
        fields = {"source": "/media/m", "options_hash": "h"}
        errors = sink.add_many(
            [(m, t, fields if t is not None else {**fields, "error": "boom"}) for m, t in entries]
        )
        assert [type(e).__name__ if e else None for e in errors] == [
            None,
            "OverflowError",
            None,
            "ValueError",
            None,
            None,
        ]
        assert "has no id" in str(errors[3])
        with pytest.raises(OverflowError):  # add() raises what add_many() returns
            sink_add(sink, "x2.wav", too_late)
    # Nothing of a malformed entry is written, everything of the others is.
    rows = {r["media_id"]: r for r in read_table(tmp_path, "transcripts").to_pylist()}
    assert sorted(rows) == ["a.wav", "b.wav", "c.wav", "d.wav"]
    assert [rows[m]["status"] for m in sorted(rows)] == ["completed", "error", "error", "completed"]
    words = read_table(tmp_path, "words").to_pylist()
    assert sorted({w["media_id"] for w in words}) == ["a.wav", "d.wav"] and len(words) == 9
    assert read_table(tmp_path, "utterances").column("media_id").to_pylist() == ["a.wav"] * 2
    check_invariants(tmp_path)


def test_transcript_rows() -> None:
    ok = transcript_row(
        "a",
        make_transcript("t1", 4),
        source="/m/a.wav",
        options_hash="h",
        flow_run_id=RUN,
        run_date=DAY,
        submitted_at=dt.datetime(2024, 5, 17, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        completed_at=dt.datetime(2024, 5, 17, 9, 5),  # naive: taken as UTC
    )
    assert ok["status"] == "completed" and ok["word_count"] == 4 and ok["error"] is None
    assert ok["audio_duration_s"] == 12.0 and ok["speech_model"] == "universal-2"
    failed = transcript_row(
        "b", None, source="/m/b.wav", options_hash="h", flow_run_id=RUN, run_date=DAY, error="boom"
    )
    assert failed["status"] == "error" and failed["transcript_id"] is None
    batch = transcripts_batch([ok, failed])
    assert batch.schema.equals(TRANSCRIPTS_SCHEMA)
    assert batch.column("submitted_at").to_pylist()[0] == T0.replace(hour=9, minute=0)
    assert batch.column("completed_at").to_pylist()[0] == T0.replace(minute=5)
    with pytest.raises(ValueError, match="needs an error message"):
        transcript_row("c", None, source="s", options_hash="h", flow_run_id=RUN, run_date=DAY)
    with pytest.raises(ValueError, match="only final"):
        transcript_row(
            "c",
            {"id": "t", "status": "processing"},
            source="s",
            options_hash="h",
            flow_run_id=RUN,
            run_date=DAY,
        )
    with pytest.raises(ValueError, match="missing"):
        transcripts_batch([{"media_id": "x"}])


# --- writing and reading ---------------------------------------------------------------------


def test_round_trip_pyarrow_duckdb_pandas(tmp_path: Path) -> None:
    write_run(tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    # Every registered table (the result tables empty, with their schemas), one file each.
    assert [f.split("/part-")[0] for f in files] == sorted(
        f"{name}/run_date=2024-05-17" for name in tables.TABLES
    )
    assert all(f.endswith("-00000.parquet") and f"/part-{RUN}-" in f for f in files)

    # pyarrow, with the declared schemas exactly (run_date typed from the folder name).
    for name, schema in tables.SCHEMAS.items():
        assert read_table(tmp_path, name).schema.equals(schema, check_metadata=True)
    t = read_table(tmp_path, "transcripts").sort_by("media_id").to_pylist()
    assert [(r["media_id"], r["status"], r["word_count"]) for r in t] == [
        ("a.wav", "completed", 5),
        ("b.wav", "completed", 3),
        ("c.wav", "error", None),
        ("d.wav", "error", None),
        ("e.wav", "completed", 0),
    ]
    assert t[1]["source_size"] == 42 and t[0]["run_date"] == DAY
    assert t[2]["error"] == "Audio too short" and t[3]["transcript_id"] is None
    assert t[0]["submitted_at"] == T0
    # Zstd-compressed files that do not carry the partition column.
    meta = pq.ParquetFile(tmp_path / files[2]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    assert "run_date" not in pq.read_schema(tmp_path / files[2]).names

    # DuckDB, reading the dataset the way an analyst would.
    words_glob = f"{tmp_path}/words/**/*.parquet"
    rows = duckdb.sql(
        f"select media_id, count(*), min(start_ms), any_value(run_date) "
        f"from read_parquet('{words_glob}', hive_partitioning=1) group by 1 order by 1"
    ).fetchall()
    assert rows == [("a.wav", 5, 0, DAY), ("b.wav", 3, 0, DAY)]
    joined = duckdb.sql(
        f"""
        select t.media_id, t.word_count, count(w.word_index) as n
        from read_parquet('{tmp_path}/transcripts/**/*.parquet', hive_partitioning=1) t
        left join read_parquet('{words_glob}', hive_partitioning=1) w using (transcript_id)
        where t.status = 'completed' group by all order by 1
        """
    ).fetchall()
    assert joined == [("a.wav", 5, 5), ("b.wav", 3, 3), ("e.wav", 0, 0)]
    ts_type = duckdb.sql(
        f"select typeof(submitted_at) from read_parquet('{tmp_path}/transcripts/**/*.parquet') "
        "limit 1"
    ).fetchall()[0]
    assert ts_type == ("TIMESTAMP WITH TIME ZONE",)

    # pandas.
    df = pd.read_parquet(tmp_path / "utterances")
    assert list(df.sort_values("utterance_index")["speaker"]) == ["A", "B"]
    assert str(pd.read_parquet(tmp_path / "words")["start_ms"].dtype) == "int64"

    check_invariants(tmp_path)


def test_memory_bounded_flushes_and_row_groups(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, "words", flow_run_id=RUN, max_buffer_rows=2500,
                           row_group_rows=1000)  # fmt: skip
    for i in range(7):
        transcript = make_transcript(f"t{i}", 1000)
        writer.write(words_batch([(f"m{i}", transcript)], flow_run_id=RUN, run_date=DAY))
        # Never more than one flush threshold (+ one batch) held in memory.
        assert writer._buffered_rows < 2500
    files = writer.close()
    assert [f.rows for f in files] == [3000, 3000, 1000]
    assert [f.path.rsplit("-", 1)[1] for f in files] == ["00000.parquet", "00001.parquet",
                                                         "00002.parquet"]  # fmt: skip
    assert pq.ParquetFile(files[0].path).metadata.num_row_groups == 3
    assert read_table(tmp_path, "words").num_rows == 7000
    with pytest.raises(RuntimeError, match="closed"):
        writer.write(words_batch([("x", make_transcript("x", 1))], flow_run_id=RUN, run_date=DAY))


def test_writers_never_overwrite_each_other(tmp_path: Path) -> None:
    for _ in range(2):  # e.g. two tasks of one flow run, or a retried flow run
        with DatasetWriter(tmp_path, "words", flow_run_id=RUN) as w:
            w.write(words_batch([("m", make_transcript("t", 10))], flow_run_id=RUN, run_date=DAY))
    assert read_table(tmp_path, "words").num_rows == 20


def test_multiple_run_dates_are_partitioned(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path, "words") as w:
        for day in (DAY, DAY + dt.timedelta(days=1)):
            w.write(words_batch([("m", make_transcript("t", 2))], flow_run_id=RUN, run_date=day))
    assert sorted(p.name for p in (tmp_path / "words").iterdir()) == [
        "run_date=2024-05-17",
        "run_date=2024-05-18",
    ]
    got = read_table(tmp_path, "words", filter=ds.field("run_date") == DAY + dt.timedelta(days=1))
    assert got.num_rows == 2


def test_writer_rejects_inferred_or_null_violating_data(tmp_path: Path) -> None:
    w = DatasetWriter(tmp_path, "words")
    inferred = pa.Table.from_pylist(
        words_batch([("m", make_transcript("t", 2))], flow_run_id=RUN, run_date=DAY).to_pylist()
    )
    with pytest.raises(TypeError, match="does not match the table schema"):
        w.write(inferred)
    with pytest.raises(ValueError, match="'media_id' must not contain nulls"):
        words_batch([(None, make_transcript("t", 2))], flow_run_id=RUN, run_date=DAY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown table"):
        DatasetWriter(tmp_path, "no_such_table")


def test_error_inside_writer_context_publishes_nothing_more(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), DatasetWriter(tmp_path, "words") as w:
        w.write(words_batch([("m", make_transcript("t", 2))], flow_run_id=RUN, run_date=DAY))
        raise RuntimeError("task crashed")
    assert read_table(tmp_path, "words").num_rows == 0


def test_readers_never_see_temp_files(tmp_path: Path) -> None:
    write_run(tmp_path)
    part_dir = tmp_path / "words" / f"run_date={DAY}"
    # Simulate a writer caught mid-write: a truncated file under the temp naming scheme, and a
    # complete one (a crash between fsync and rename).
    real = next(part_dir.glob("part-*.parquet"))
    (part_dir / f".{real.name}.deadbeef.tmp").write_bytes(real.read_bytes()[:100])
    (part_dir / f".{real.name}.cafebabe.tmp").write_bytes(real.read_bytes())
    assert read_table(tmp_path, "words").num_rows == 8
    assert pd.read_parquet(tmp_path / "words").shape[0] == 8
    count = duckdb.sql(
        f"select count(*) from read_parquet('{tmp_path}/words/**/*.parquet', hive_partitioning=1)"
    ).fetchall()[0]
    assert count == (8,)
    check_invariants(tmp_path)


def test_atomic_write_leaves_no_temp_file_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(lake_root.os, "replace", failing_replace)
    table = pa.table({"x": [1, 2]})
    target = "t/run_date=2024-01-01/part-a-00000.parquet"
    with pytest.raises(OSError, match="disk full"):
        lake_root.OutputRoot.of(tmp_path).publish_parquet(target, table)
    assert os.listdir(tmp_path / "t" / "run_date=2024-01-01") == []


def test_fsspec_filesystem_is_accepted(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    mem = fsspec.filesystem("memory")
    with DatasetWriter("/out", "words", filesystem=mem) as w:
        w.write(words_batch([("m", make_transcript("t", 3))], flow_run_id=RUN, run_date=DAY))
    assert mem.glob("/out/words/run_date=2024-05-17/part-*.parquet")
    assert read_table("/out", "words", filesystem=mem).num_rows == 3


def test_read_missing_table_is_empty_with_schema(tmp_path: Path) -> None:
    got = read_table(tmp_path, "utterances")
    assert got.num_rows == 0 and got.schema.equals(UTTERANCES_SCHEMA)


# --- invariants ------------------------------------------------------------------------------


def _rewrite(root: Path, table: str, mutate: Any) -> None:
    """Replace a table's data with ``mutate(rows)``, keeping the exact schema."""
    rows = read_table(root, table).to_pylist()
    mutate(rows)
    for f in (root / table).rglob("*.parquet"):
        f.unlink()
    with DatasetWriter(root, table) as w:
        w.write(pa.Table.from_pylist(rows, schema=tables.SCHEMAS[table]))


@pytest.mark.parametrize(
    ("table", "mutate", "expected"),
    [
        ("transcripts", lambda r: r.append(copy.deepcopy(r[0])), "media_id not unique"),
        ("transcripts", lambda r: r[0].update(word_count=99), "word_count != rows in words"),
        ("transcripts", lambda r: r.pop(0), "words without a completed transcripts row"),
        ("transcripts", lambda r: r[2].update(status="queued"), "status not completed|error"),
        ("transcripts", lambda r: r[2].update(error=None), "error row without error text"),
        ("words", lambda r: r[0].update(confidence=1.5), "confidence outside [0, 1]"),
        ("words", lambda r: r[0].update(end_ms=r[0]["start_ms"]), "start_ms >= end_ms"),
        ("words", lambda r: r[1].update(start_ms=-5, end_ms=1), "start_ms decreases"),
        ("words", lambda r: r[1].update(word_index=7), "word_index is not 0..n-1"),
        ("utterances", lambda r: r[0].update(confidence=-0.1), "utterances: confidence"),
    ],
)  # fmt: skip
def test_invariants_fail_on_bad_data(
    tmp_path: Path, table: str, mutate: Any, expected: str
) -> None:
    write_run(tmp_path)
    assert find_violations(tmp_path) == []
    _rewrite(tmp_path, table, lambda rows: _sorted_then(rows, mutate))
    with pytest.raises(TableInvariantError) as exc:
        check_invariants(tmp_path)
    assert expected in str(exc.value)


def _sorted_then(rows: list[dict[str, Any]], mutate: Any) -> None:
    # Deterministic row order (files come back in any order), so rows[i] means the same row.
    rows.sort(key=lambda r: (r["media_id"], r.get("word_index", r.get("utterance_index", 0))))
    mutate(rows)


def test_importing_voxlake_leaves_arrows_allocator_as_it_was() -> None:
    # A fresh interpreter: the pool is chosen once per process. The variable is removed so
    # that Arrow's own default is what the import must leave alone.
    import subprocess
    import sys

    code = (
        "import pyarrow as pa\n"
        "before = pa.default_memory_pool().backend_name\n"
        "import voxlake.lake.writer, voxlake.lake.read, voxlake.lake.ledger, voxlake.lake.views\n"
        "print(before, pa.default_memory_pool().backend_name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.split()
    assert after == before
