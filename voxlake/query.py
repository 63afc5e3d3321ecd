"""``voxlake query``: SQL over an output root, with the views of voxlake/sql/views.sql defined.

Results stream out of DuckDB as Arrow record batches, so a large result never sits in Python
objects: ``table`` (DuckDB's box rendering, ``max_rows`` rows), ``csv`` (header, then rows),
``json`` (JSON Lines: one object per row; dates and timestamps as ISO 8601 strings) or
``parquet`` (to ``out``, or as bytes to a stdout that is not a terminal).

Errors of the SQL itself (parser, binder, catalog, runtime) are :class:`QueryError`, carrying
DuckDB's message; the CLI prints it (``error: ...``) and exits 2.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterable
from typing import IO, Any

import duckdb
import pyarrow as pa

from voxlake.errors import VoxlakeError

__all__ = ["FORMATS", "QueryError", "repl", "run_statement", "write_result"]

FORMATS = ("table", "csv", "json", "parquet")
_BATCH_ROWS = 64 * 1024


class QueryError(VoxlakeError):
    """DuckDB rejected or failed a statement; ``str()`` is DuckDB's own message."""


def run_statement(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """Run ``sql`` (one or more statements); the last statement's result, or None if it has
    none (``SET``, ``CREATE VIEW``, ...)."""
    try:
        return con.sql(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)  # Decimal, UUID, ...


def _reader(rel: duckdb.DuckDBPyRelation) -> pa.RecordBatchReader:
    try:
        return rel.to_arrow_reader(_BATCH_ROWS)
    except duckdb.Error as exc:
        raise QueryError(str(exc)) from None


def _batches(reader: pa.RecordBatchReader) -> Iterable[pa.RecordBatch]:
    try:
        yield from reader
    except duckdb.Error as exc:  # runtime errors can surface while the result is read
        raise QueryError(str(exc)) from None


def write_result(
    rel: duckdb.DuckDBPyRelation,
    fmt: str,
    *,
    text: IO[str],
    binary: IO[bytes] | None = None,
    max_rows: int = 100,
) -> None:
    """Write ``rel``'s rows in ``fmt``: ``table`` and ``json`` to ``text``, ``csv`` and
    ``parquet`` to ``binary`` (pyarrow writes bytes; ``text`` is flushed first so the two
    streams of one stdout never interleave)."""
    if fmt == "table":
        # show() prints through Python's sys.stdout: point it at ``text`` for the call.
        saved, sys.stdout = sys.stdout, text
        try:
            rel.show(max_rows=max_rows, max_width=10_000)
        except duckdb.Error as exc:
            raise QueryError(str(exc)) from None
        finally:
            sys.stdout = saved
    elif fmt == "json":
        for batch in _batches(_reader(rel)):
            for row in batch.to_pylist():
                text.write(json.dumps(row, default=_json_default, ensure_ascii=False) + "\n")
    elif fmt in ("csv", "parquet"):
        if binary is None:
            raise ValueError(f"{fmt} needs a binary output")
        text.flush()
        reader = _reader(rel)
        if fmt == "csv":
            import pyarrow.csv as pacsv

            writer: Any = pacsv.CSVWriter(binary, reader.schema)  # the header even with no rows
        else:
            import pyarrow.parquet as pq

            writer = pq.ParquetWriter(binary, reader.schema, compression="zstd")
        try:
            for batch in _batches(reader):
                writer.write_batch(batch)
        finally:
            writer.close()
        binary.flush()
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    text.flush()


def repl(
    con: duckdb.DuckDBPyConnection,
    lines: Iterable[str],
    *,
    fmt: str,
    out: IO[str],
    err: IO[str],
    prompt: bool,
    binary: IO[bytes] | None = None,
    max_rows: int = 100,
) -> int:
    """Read statements from ``lines`` (a statement ends with ``;`` at the end of a line; the
    rest runs at end of input), run each, print its result. Returns the number of statements
    that failed; their DuckDB messages go to ``err`` and the session goes on."""
    failures = 0
    buffer: list[str] = []

    def execute(sql: str) -> None:
        nonlocal failures
        try:
            rel = run_statement(con, sql)
            if rel is not None:
                write_result(rel, fmt, text=out, binary=binary, max_rows=max_rows)
        except QueryError as exc:
            failures += 1
            err.write(f"error: {exc}\n")
            err.flush()

    if prompt:
        out.write("voxlake query: end statements with ';', .quit to leave\nvoxlake> ")
        out.flush()
    for line in lines:
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit"):
            break
        if stripped:
            buffer.append(line.rstrip("\n"))
        if buffer and stripped.endswith(";"):
            execute("\n".join(buffer))
            buffer = []
        if prompt:
            out.write("   ...> " if buffer else "voxlake> ")
            out.flush()
    if buffer:
        execute("\n".join(buffer))
    return failures
