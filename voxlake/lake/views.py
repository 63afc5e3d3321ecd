"""DuckDB views over an output root: the history tables and the current view.

:func:`connect` returns an in-memory DuckDB connection on which ``voxlake/sql/views.sql`` has
defined, over the Parquet tables under ``root``:

- ``transcripts``, ``words``, ``utterances``, ``sentences``, ``paragraphs`` and the
  speech-understanding tables (``voxlake.lake.tables.NESTED``): every run's rows (history),
  with the declared schemas (``voxlake.lake.tables``), ``run_date`` a ``DATE``;
- ``transcripts_current``: one row per ``media_id``, its latest completed row by
  ``recorded_at``, or its latest row if it never completed;
- ``words_current``, ``utterances_current`` and ``<table>_current`` for each other table
  (``sentences``, ``paragraphs``, ``sentiment``, ``entities``, ...): the rows of the current
  completed transcripts, each transcript once even when two runs wrote its rows;
- ``ledger``: one row per ``media_id``, its latest ledger event (``voxlake.lake.ledger``): status,
  stage, error, transcript id and audio hours, so deferred, in-flight and failed items can be
  listed with SQL.

A local root is read by DuckDB's own Parquet reader. An ``s3://`` root (or any explicit
``filesystem``) is read through pyarrow.dataset and the filesystem voxlake writes with (s3fs,
the AWS credential chain), registered in DuckDB as Arrow datasets: DuckDB's httpfs extension is
downloaded on first use, which an offline machine cannot do, and it would need the credentials
handed over in SQL. DuckDB still pushes projections and filters down into the Arrow scan.

Nothing is written: a table with no files yet reads as empty with its schema.
:func:`check_output_root` tells a folder that is no output root (a misspelled path) from one
that is: ``voxlake query`` and ``voxlake report`` refuse the first with one line.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs

from voxlake.errors import VoxlakeError
from voxlake.lake.root import OutputRoot
from voxlake.lake.tables import PARTITION_COLUMN, SCHEMAS
from voxlake.storage import S3Options

__all__ = [
    "CURRENT_VIEWS",
    "HISTORY_VIEWS",
    "NotAnOutputRootError",
    "check_output_root",
    "connect",
    "views_sql",
]

HISTORY_VIEWS = tuple(SCHEMAS)  # every registered table (voxlake.lake.tables.TABLES)
CURRENT_VIEWS = tuple(f"{name}_current" for name in HISTORY_VIEWS)
# The ledger's event files and columns (voxlake.lake.ledger's EVENTS_DIR and EVENT_SCHEMA, which
# tests/integration/test_views.py holds these to). Not imported from there: voxlake.lake.ledger
# imports pandas and the manifest code, seconds of start-up that `voxlake query` does not need.
LEDGER_DIR = "_ledger"
_EVENTS_DIR = f"{LEDGER_DIR}/events"
_EVENT_COLUMNS = pa.schema(
    [
        ("item_key", pa.string()),
        ("media_id", pa.string()),
        ("source", pa.string()),
        ("source_fingerprint", pa.string()),
        ("source_size", pa.int64()),
        ("options_hash", pa.string()),
        ("status", pa.string()),
        ("audio_url", pa.string()),
        ("transcript_id", pa.string()),
        ("stage", pa.string()),
        ("error", pa.string()),
        ("audio_duration_s", pa.float64()),
        ("run_id", pa.string()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("tables", pa.string()),
    ]
)
#: What ``voxlake run --output`` makes under a root: a root holds at least one of them.
# (Every run that writes rows writes these three; the result tables add nothing to the check.)
_ROOT_MARKERS = ("transcripts", "words", "utterances", LEDGER_DIR)


class NotAnOutputRootError(VoxlakeError):
    """The path holds no voxlake tables or ledger (a misspelled folder, or no run wrote it)."""


def check_output_root(
    root: str | os.PathLike[str] | OutputRoot,
    *,
    filesystem: Any | None = None,
    s3: S3Options | None = None,
) -> None:
    """Raise :class:`NotAnOutputRootError` unless ``root`` holds a table folder or the ledger.

    Reading a folder that is no output root would give empty views, and a misspelled path
    would look like a root where nothing happened. Nothing is created by looking. ``s3``: as
    for :func:`connect`.
    """
    output = OutputRoot.of(root, filesystem=filesystem, s3=s3)
    shown = output.url
    hint = "give the --output folder of a voxlake run"
    if not output.exists():
        raise NotAnOutputRootError(f"{shown} does not exist: {hint}")
    found = output.fs.get_file_info([output.join(name) for name in _ROOT_MARKERS])
    if all(info.type == pafs.FileType.NotFound for info in found):
        raise NotAnOutputRootError(
            f"{shown} is not a voxlake output root (it has no transcripts/, words/, "
            f"utterances/ or {LEDGER_DIR}/ folder): {hint}"
        )


def views_sql() -> str:
    """The shipped view definitions, with ``{transcripts}``, ``{words}``, ``{utterances}``
    placeholders for the relations that read each table."""
    return resources.files("voxlake").joinpath("sql/views.sql").read_text(encoding="utf-8")


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# DuckDB's names for the Arrow types the schemas use (voxlake.lake.tables).
_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.date32(): "DATE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
    pa.bool_(): "BOOLEAN",
}


def _duckdb_type(type_: pa.DataType) -> str:
    """DuckDB's name for an Arrow type of the schemas, nested types (lists, structs, maps of the
    result tables) included."""
    if pa.types.is_map(type_):
        return f"MAP({_duckdb_type(type_.key_type)}, {_duckdb_type(type_.item_type)})"
    if pa.types.is_list(type_):
        return f"{_duckdb_type(type_.value_type)}[]"
    if pa.types.is_struct(type_):
        fields = ", ".join(f'"{f.name}" {_duckdb_type(f.type)}' for f in type_)
        return f"STRUCT({fields})"
    return _DUCKDB_TYPES[type_]


def _typed_empty(schema: pa.Schema) -> str:
    """A relation with no rows and exactly the schema's columns and types."""
    columns = ", ".join(f'CAST(NULL AS {_duckdb_type(f.type)}) AS "{f.name}"' for f in schema)
    return f"(SELECT {columns} LIMIT 0)"


def _local_source(root: str, table: str) -> str:
    # The typed empty relation comes first: the view then has every declared column, in order
    # and typed as declared, even over files written before a column existed, and over a table
    # with no files at all (read_parquet fails on an empty glob).
    typed = _typed_empty(SCHEMAS[table])
    folder = Path(root) / table
    if not folder.is_dir() or next(folder.rglob("*.parquet"), None) is None:
        return typed
    glob = _sql_string(f"{folder.as_posix()}/**/*.parquet")
    return (
        f"(SELECT * FROM {typed} UNION ALL BY NAME "
        f"SELECT * FROM read_parquet({glob}, hive_partitioning = true, "
        f"hive_types = {{'{PARTITION_COLUMN}': DATE}}, union_by_name = true))"
    )


def _arrow_source(con: duckdb.DuckDBPyConnection, output: OutputRoot, table: str) -> str:
    # Imported here: pyarrow.dataset imports pandas, which a local root never needs.
    import pyarrow.dataset as ds

    name = f"_voxlake_{table}"
    schema = SCHEMAS[table]
    data: Any
    if not output.exists(table):
        data = schema.empty_table()
    else:
        partitioning = ds.partitioning(pa.schema([schema.field(PARTITION_COLUMN)]), flavor="hive")
        data = ds.dataset(
            output.join(table),
            format="parquet",
            partitioning=partitioning,
            schema=schema,
            filesystem=output.fs,
        )
    con.register(name, data)
    return name


def _ledger_source(con: duckdb.DuckDBPyConnection, output: OutputRoot) -> str:
    """The ledger's event files (``<root>/_ledger/events/*.parquet``) as a relation typed as
    ``voxlake.lake.ledger.EVENT_SCHEMA``; empty when no run has recorded anything."""
    typed = _typed_empty(_EVENT_COLUMNS)
    if output.local:
        folder = Path(output.path) / _EVENTS_DIR
        if next(folder.glob("*.parquet"), None) is None:
            return typed
        glob = _sql_string(f"{folder.as_posix()}/*.parquet")
        # union_by_name: files written before a column was added (``tables``) lack it.
        return (
            f"(SELECT * FROM {typed} UNION ALL BY NAME "
            f"SELECT * FROM read_parquet({glob}, union_by_name = true))"
        )
    import pyarrow.dataset as ds

    data: Any = _EVENT_COLUMNS.empty_table()
    if output.exists(_EVENTS_DIR):
        data = ds.dataset(
            output.join(_EVENTS_DIR), format="parquet", schema=_EVENT_COLUMNS, filesystem=output.fs
        )
    con.register("_voxlake_ledger", data)
    return "_voxlake_ledger"


def connect(
    root: str | os.PathLike[str] | OutputRoot,
    *,
    filesystem: Any | None = None,
    s3: S3Options | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with voxlake's views over the tables under ``root``.

    ``root`` is a local folder or ``s3://bucket/prefix`` (read with s3fs, the AWS credential
    chain and ``s3``'s endpoint, region and profile, as ``voxlake run`` writes it); ``filesystem``
    (pyarrow or fsspec) overrides how it is reached. Timestamps are shown in UTC, as they are
    stored.
    """
    output = OutputRoot.of(root, filesystem=filesystem, s3=s3)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        sources: dict[str, str] = {}
        for table in HISTORY_VIEWS:
            if output.local:
                sources[table] = _local_source(output.path, table)
            else:
                sources[table] = _arrow_source(con, output, table)
        sources["ledger"] = _ledger_source(con, output)
        con.execute(views_sql().format(**sources))
    except BaseException:
        con.close()
        raise
    return con
