"""The current view (voxlake/sql/views.sql, voxlake.lake.views, lake.read.read_current)
and the readers.

Real DuckDB over real Parquet files written by TableSink under tmp_path (and on moto's S3).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from tests.integration.test_tables import make_transcript
from voxlake.lake import tables, views
from voxlake.lake.read import read_current, read_table
from voxlake.lake.tables import SCHEMAS
from voxlake.lake.writer import TableSink

DAY1 = dt.date(2024, 5, 17)
DAY2 = dt.date(2024, 5, 18)
T1 = dt.datetime(2024, 5, 17, 9, 0, tzinfo=dt.UTC)
T2 = dt.datetime(2024, 5, 18, 9, 0, tzinfo=dt.UTC)
RUN_DATE = ds.partitioning(pa.schema([("run_date", pa.date32())]), flavor="hive")


def _add(
    sink: TableSink, media_id: str, transcript: Any, recorded_at: dt.datetime, **kw: Any
) -> None:
    sink.add(
        media_id,
        transcript,
        source=f"/media/{media_id}.wav",
        options_hash="h",
        recorded_at=recorded_at,
        **kw,
    )


def _error(tid: str) -> dict[str, Any]:
    return {"id": tid, "status": "error", "error": "Audio duration is too short."}


def write_two_runs(root: Path | str, **sink_kw: Any) -> None:
    """Two runs' worth of rows, covering every way an item's history can go."""
    with TableSink(root, flow_run_id="run-1", run_date=DAY1, **sink_kw) as sink:
        _add(sink, "again", make_transcript("t-again-1", 4), T1)  # completed, then again
        _add(sink, "late", _error("t-late-1"), T1)  # error, then completed
        _add(sink, "never", None, T1, error="upload failed: HTTP 500")  # only ever errors
        _add(sink, "twice", make_transcript("t-twice", 3, speakers=True), T1)  # same job twice
        _add(sink, "kept", make_transcript("t-kept", 2), T1)  # completed, then an error
    with TableSink(root, flow_run_id="run-2", run_date=DAY2, **sink_kw) as sink:
        _add(sink, "again", make_transcript("t-again-2", 5), T2)
        _add(sink, "late", make_transcript("t-late-2", 6), T2)
        _add(sink, "never", _error("t-never-2"), T2)
        _add(sink, "twice", make_transcript("t-twice", 3, speakers=True), T2)
        _add(sink, "kept", None, T2, error="upload failed: HTTP 500")


def write_ledger(root: Path | str) -> None:
    """Ledger events beside :func:`write_two_runs`' tables (and for items no table row has yet):
    an item completed, one failed then completed, one whose job failed, one deferred by a
    budget, one in flight, one whose submit outcome is unknown."""
    from voxlake.lake.ledger import Event, Ledger, Status
    from voxlake.manifest import MediaItem, SourceInfo, SourceKind, TranscriptionOptions

    options = TranscriptionOptions()

    def item(media_id: str) -> MediaItem:
        return MediaItem(media_id, f"/media/{media_id}.wav", SourceKind.local, options, 1,
                         SourceInfo(10, "10:1"))  # fmt: skip

    def at(base: dt.datetime, second: int) -> dt.datetime:
        return base + dt.timedelta(seconds=second)

    url = "https://cdn.example/upload/"
    for run_id, events in (
        ("run-1", [
            Event(item("again"), Status.submitting, audio_url=url + "a1", at=at(T1, 1)),
            Event(item("again"), Status.submitted, transcript_id="t-again-1", at=at(T1, 2)),
            Event(item("again"), Status.completed, transcript_id="t-again-1",
                  audio_duration_s=1800.0, at=at(T1, 3)),
            Event(item("late"), Status.submitting, audio_url=url + "l1", at=at(T1, 1)),
            Event(item("late"), Status.submitted, transcript_id="t-late-1", at=at(T1, 2)),
            Event(item("late"), Status.job_failed, transcript_id="t-late-1", stage="poll",
                  error="Audio duration is too short.", at=at(T1, 3)),
            Event(item("never"), Status.failed, stage="upload", error="upload failed: HTTP 500",
                  at=at(T1, 1)),
            Event(item("big"), Status.deferred, error="not submitted: the run's budget of 1 "
                  "audio hours", audio_duration_s=7200.0, at=at(T1, 1)),
        ]),
        ("run-2", [
            Event(item("late"), Status.submitting, audio_url=url + "l2", at=at(T2, 1)),
            Event(item("late"), Status.submitted, transcript_id="t-late-2", at=at(T2, 2)),
            Event(item("late"), Status.completed, transcript_id="t-late-2",
                  audio_duration_s=3600.0, at=at(T2, 3)),
            Event(item("flying"), Status.submitting, audio_url=url + "f2", at=at(T2, 1)),
            Event(item("flying"), Status.submitted, transcript_id="t-flying", at=at(T2, 2)),
            Event(item("unknown"), Status.submitting, audio_url=url + "u2", at=at(T2, 1)),
        ]),
    ):  # fmt: skip
        with Ledger.open(str(root), run_id=run_id) as ledger:
            ledger.append(events)


EXPECTED_LEDGER = {  # media_id -> (status, stage, error, transcript_id, audio_hours)
    "again": ("completed", None, None, "t-again-1", 0.5),
    "big": ("deferred", None, "not submitted: the run's budget of 1 audio hours", None, 2.0),
    "flying": ("submitted", None, None, "t-flying", None),
    "late": ("completed", None, None, "t-late-2", 1.0),
    "never": ("failed", "upload", "upload failed: HTTP 500", None, None),
    "unknown": ("submitting", None, None, None, None),
}


EXPECTED_CURRENT = {  # media_id -> (flow_run_id, status, transcript_id)
    "again": ("run-2", "completed", "t-again-2"),
    "kept": ("run-1", "completed", "t-kept"),
    "late": ("run-2", "completed", "t-late-2"),
    "never": ("run-2", "error", "t-never-2"),
    "twice": ("run-2", "completed", "t-twice"),
}


def test_current_view_picks_one_row_per_item(tmp_path: Path) -> None:
    write_two_runs(tmp_path)
    con = views.connect(tmp_path)
    current = con.sql(
        "select media_id, flow_run_id, status, transcript_id from transcripts_current"
    ).fetchall()
    assert {m: rest for m, *rest in current} == {m: list(v) for m, v in EXPECTED_CURRENT.items()}
    assert len(current) == len(EXPECTED_CURRENT)  # each media_id exactly once

    # History keeps everything; the current words are each current transcript's words, once.
    assert con.sql("select count(*) from transcripts").fetchall() == [(10,)]
    assert con.sql("select count(*) from words where media_id = 'twice'").fetchall() == [(6,)]
    words = con.sql(
        "select media_id, count(*), count(distinct word_index), any_value(flow_run_id) "
        "from words_current group by all order by 1"
    ).fetchall()
    assert words == [
        ("again", 5, 5, "run-2"),
        ("kept", 2, 2, "run-1"),
        ("late", 6, 6, "run-2"),
        ("twice", 3, 3, "run-2"),
    ]
    duplicates = con.sql(
        "select count(*) from (select media_id, word_index from words_current "
        "group by all having count(*) > 1)"
    ).fetchall()
    assert duplicates == [(0,)]
    utterances = con.sql(
        "select media_id, flow_run_id, count(*) from utterances_current group by all"
    )
    assert utterances.fetchall() == [("twice", "run-2", 2)]

    # read_current gives exactly the views' rows, with the declared schemas.
    for table in SCHEMAS:
        got = read_current(tmp_path, table)
        assert got.schema.equals(SCHEMAS[table], check_metadata=True)
        want = con.sql(f"select * from {table}_current").to_arrow_table()
        key = [
            "media_id",
            *{"words": ["word_index"], "utterances": ["utterance_index"]}.get(table, []),
        ]
        assert got.to_pylist() == want.sort_by([(k, "ascending") for k in key]).to_pylist()


def test_ledger_view_is_each_items_latest_state(tmp_path: Path) -> None:
    write_two_runs(tmp_path)
    write_ledger(tmp_path)
    con = views.connect(tmp_path)
    rows = con.sql(
        "select media_id, status, stage, error, transcript_id, audio_hours from ledger"
    ).fetchall()
    assert {m: tuple(rest) for m, *rest in rows} == EXPECTED_LEDGER
    assert len(rows) == len(EXPECTED_LEDGER)  # one row per item
    assert name_types(con, "ledger") == LEDGER_COLUMNS


def test_the_ledger_view_reads_the_ledgers_files_and_columns() -> None:
    from voxlake.lake import ledger

    assert views._EVENTS_DIR == ledger.EVENTS_DIR
    columns = [(f.name, f.type) for f in views._EVENT_COLUMNS]
    assert columns == [(f.name, f.type) for f in ledger.EVENT_SCHEMA]


LEDGER_COLUMNS = {  # the columns docs/tables.md documents, in order
    "media_id": "VARCHAR",
    "source": "VARCHAR",
    "status": "VARCHAR",
    "stage": "VARCHAR",
    "error": "VARCHAR",
    "transcript_id": "VARCHAR",
    "audio_hours": "DOUBLE",
    "run_id": "VARCHAR",
    "recorded_at": "TIMESTAMP WITH TIME ZONE",
    "item_key": "VARCHAR",
}


def test_views_over_a_root_without_files_are_empty_and_typed(tmp_path: Path) -> None:
    con = views.connect(tmp_path / "nothing-yet")
    for name in (*views.HISTORY_VIEWS, *views.CURRENT_VIEWS, "ledger"):
        assert con.sql(f"select count(*) from {name}").fetchall() == [(0,)]
    assert name_types(con, "ledger") == LEDGER_COLUMNS
    table = name_types(con, "transcripts_current")
    assert table["recorded_at"] == "TIMESTAMP WITH TIME ZONE" and table["run_date"] == "DATE"
    assert read_current(tmp_path / "nothing-yet", "words").schema.equals(tables.WORDS_SCHEMA)


def name_types(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    rel = con.sql(f"select * from {view}")
    return {c: str(t) for c, t in zip(rel.columns, rel.types, strict=True)}


def test_views_sql_ships_inside_the_package() -> None:
    sql = views.views_sql()
    for name in (*views.HISTORY_VIEWS, *views.CURRENT_VIEWS):
        assert f"CREATE OR REPLACE VIEW {name} AS" in sql


def test_current_view_on_s3(s3fs_fs: Any, make_bucket: Callable[[str], str]) -> None:
    bucket = make_bucket("lake")
    write_two_runs(f"{bucket}/voxlake", filesystem=s3fs_fs)
    root = f"s3://{bucket}/voxlake"  # the default filesystem: s3fs and the AWS credential chain
    con = views.connect(root)
    current = con.sql(
        "select media_id, flow_run_id, status, transcript_id from transcripts_current"
    )
    assert {m: tuple(rest) for m, *rest in current.fetchall()} == EXPECTED_CURRENT
    assert con.sql("select count(*) from words_current").fetchall() == [(16,)]
    assert read_current(root, "words").num_rows == 16
    assert read_current(f"s3://{bucket}/empty", "utterances").num_rows == 0
    write_ledger(root)
    ledger = views.connect(root).sql("select media_id, status from ledger").fetchall()
    assert dict(ledger) == {m: v[0] for m, v in EXPECTED_LEDGER.items()}


# --- every dataset exists, and every documented reader agrees on the types ---------------------


def write_demo_like(root: Path, *, speakers: bool) -> None:
    with TableSink(root, flow_run_id="run-1", run_date=DAY1) as sink:
        for i in range(3):
            _add(sink, f"clip-{i}", make_transcript(f"t{i}", 4 + i, speakers=speakers), T1)
        _add(sink, "too-short", _error("t-short"), T1)
        _add(sink, "not-audio", None, T1, error="upload: looks like plain text, not audio")


def _normalised(schema: pa.Schema) -> dict[str, pa.DataType]:
    return {f.name: f.type for f in schema}


@pytest.mark.parametrize("speakers", [True, False], ids=["speaker-labels", "no-speaker-labels"])
def test_every_reader_gives_the_declared_types(tmp_path: Path, speakers: bool) -> None:
    write_demo_like(tmp_path, speakers=speakers)
    for table, schema in SCHEMAS.items():
        want = _normalised(schema)
        # The documented reads (docs/analysts.md, docs/tables.md "Querying").
        duck = duckdb.sql(
            f"select * from read_parquet('{tmp_path}/{table}/**/*.parquet', hive_partitioning=1)"
        ).to_arrow_table()
        arrow = ds.dataset(tmp_path / table, format="parquet", partitioning=RUN_DATE).to_table()
        frame = pd.read_parquet(tmp_path / table, partitioning=RUN_DATE, dtype_backend="pyarrow")
        via_read_table = read_table(tmp_path, table).to_pandas(types_mapper=pd.ArrowDtype)
        frames = {"pandas": frame, "read_table().to_pandas": via_read_table}
        got = {
            # DuckDB names the zone Etc/UTC; the same type otherwise.
            "duckdb": {
                n: pa.timestamp("us", tz="UTC") if pa.types.is_timestamp(t) else t
                for n, t in _normalised(duck.schema).items()
            },
            "pyarrow": _normalised(arrow.schema),
            **{k: {c: d.pyarrow_dtype for c, d in f.dtypes.items()} for k, f in frames.items()},
        }
        for reader, types in got.items():
            assert types == want, f"{table} via {reader}"
        if table == "utterances" and not speakers:
            assert duck.num_rows == arrow.num_rows == len(frame) == 0  # empty, yet it exists
        if table == "transcripts":
            assert frame["word_count"].dtype == pd.ArrowDtype(pa.int64())  # nulls stay int64
            assert frame["run_date"].tolist() == [DAY1] * 5


def test_a_run_without_rows_for_a_table_leaves_an_empty_typed_file(tmp_path: Path) -> None:
    with TableSink(tmp_path, flow_run_id="run-1", run_date=DAY1) as sink:
        _add(sink, "bad", None, T1, error="upload failed")
    for table in ("words", "utterances"):
        (path,) = (tmp_path / table).rglob("*.parquet")
        assert path.parent.name == "run_date=2024-05-17"
        assert read_table(tmp_path, table).num_rows == 0
    assert pd.read_parquet(tmp_path / "utterances").shape == (0, len(tables.UTTERANCES_SCHEMA))
    # Once the tables exist, a later run adds no empty files; a run with no rows writes nothing.
    files = sorted(tmp_path.rglob("*.parquet"))
    with TableSink(tmp_path, flow_run_id="run-2", run_date=DAY2) as sink:
        _add(sink, "bad", None, T2, error="upload failed")
    assert len(sorted(tmp_path.rglob("*.parquet"))) == len(files) + 1  # its transcripts row
    files = sorted(tmp_path.rglob("*"))
    with TableSink(tmp_path, flow_run_id="run-3", run_date=DAY2):
        pass
    assert sorted(tmp_path.rglob("*")) == files
