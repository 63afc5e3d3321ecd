"""Writing the tables: atomic, memory-bounded Parquet datasets, in the order readers rely on.

Each table is a hive-partitioned Parquet dataset under the output root
(``<root>/<table>/run_date=YYYY-MM-DD/part-<prefix>-<seq>.parquet``). Order of writes matters
for readers: a ``transcripts`` row is the commit record of an item, so :class:`TableSink`
flushes the nested tables (words, utterances, ...) *before* the transcripts that describe them.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from voxlake.lake.normalize import MALFORMED, SinkEntry, normalize
from voxlake.lake.root import OutputRoot
from voxlake.lake.tables import NESTED, PARTITION_COLUMN
from voxlake.lake.tables import table as registered
from voxlake.lake.tables.schema import check_not_null, file_schema

__all__ = ["DatasetWriter", "SinkEntry", "TableSink", "WrittenFile"]


@dataclass(frozen=True)
class WrittenFile:
    path: str
    rows: int


class DatasetWriter:
    """Appends batches of one table to ``<root>/<table>/run_date=.../part-<prefix>-<seq>.parquet``.

    Memory-bounded: batches are buffered until ``max_buffer_rows`` rows or ``max_buffer_bytes``
    bytes, then written as one file per partition (row groups of at most ``row_group_rows`` rows
    and roughly ``row_group_bytes``). :meth:`close` writes the rest. Every file is published
    atomically (:meth:`voxlake.lake.root.OutputRoot.publish`).

    File names are unique per writer: ``prefix`` is ``<flow_run_id>-<8 hex>`` (or a uuid), so
    several tasks of one flow run, or a retried flow run, never overwrite each other's files.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | OutputRoot,
        table: str,
        *,
        flow_run_id: str | None = None,
        filesystem: Any | None = None,
        max_buffer_rows: int = 500_000,
        max_buffer_bytes: int = 256 * 1024 * 1024,
        row_group_rows: int = 128 * 1024,
        row_group_bytes: int = 64 * 1024 * 1024,
        compression: str = "zstd",
    ) -> None:
        self.schema = registered(table).schema
        self.output = OutputRoot.of(root, filesystem=filesystem)
        self.root = self.output.path
        self.table = table
        self._file_schema = file_schema(self.schema)
        token = uuid.uuid4().hex
        self.prefix = f"{flow_run_id}-{token[:8]}" if flow_run_id else token
        self.max_buffer_rows = max_buffer_rows
        self.max_buffer_bytes = max_buffer_bytes
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self.compression = compression
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0
        self._seq = 0
        self._closed = False
        self.files: list[WrittenFile] = []

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Buffer rows; flushes a file when the buffer is full."""
        if self._closed:
            raise RuntimeError(f"{self.table} writer is closed")
        if not data.schema.equals(self.schema):
            raise TypeError(
                f"{self.table}: data schema does not match the table schema\n"
                f"expected:\n{self.schema.remove_metadata()}\ngot:\n{data.schema.remove_metadata()}"
            )
        check_not_null(data, self.schema)
        batches = data.to_batches() if isinstance(data, pa.Table) else [data]
        for batch in batches:
            if batch.num_rows == 0:
                continue
            self._buffer.append(batch)
            self._buffered_rows += batch.num_rows
            self._buffered_bytes += batch.nbytes
        if self._buffered_rows >= self.max_buffer_rows or (
            self._buffered_bytes >= self.max_buffer_bytes
        ):
            self.flush()

    def flush(self) -> list[WrittenFile]:
        """Write everything buffered now (one file per run_date); returns the new files."""
        if not self._buffer:
            return []
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        self._buffer, self._buffered_rows, self._buffered_bytes = [], 0, 0
        written = []
        dates = table.column(PARTITION_COLUMN)
        # A run normally has one run_date; the general path splits by value.
        for date in sorted(pc.unique(dates).to_pylist()):
            part = table.filter(pc.equal(dates, pa.scalar(date, pa.date32())))
            part = part.drop_columns([PARTITION_COLUMN]).cast(self._file_schema)
            path = self.output.publish_parquet(
                self._next_file(date),
                part,
                compression=self.compression,
                row_group_size=self._row_group_size(part),
            )
            written.append(WrittenFile(path, part.num_rows))
        self.files.extend(written)
        return written

    def write_empty(self, run_date: dt.date) -> WrittenFile:
        """Publish a file with no rows (only the schema) in ``run_date``'s partition.

        For a run that had no rows for this table: readers that glob or list the folder
        (DuckDB's ``read_parquet('<root>/utterances/**/*.parquet')``, ``pd.read_parquet``) fail
        on a missing table, but read an empty file as an empty, fully typed table.
        """
        path = self.output.publish_parquet(
            self._next_file(run_date), self._file_schema.empty_table(), compression=self.compression
        )
        written = WrittenFile(path, 0)
        self.files.append(written)
        return written

    def exists(self) -> bool:
        """True once the table's folder exists under the root (an earlier run wrote it)."""
        return self.output.exists(self.table)

    def _next_file(self, run_date: dt.date) -> str:
        name = f"part-{self.prefix}-{self._seq:05d}.parquet"
        self._seq += 1
        return f"{self.table}/{PARTITION_COLUMN}={run_date.isoformat()}/{name}"

    def _row_group_size(self, table: pa.Table) -> int:
        # Cap by bytes too: 128k rows of transcripts (full texts) would be gigabytes.
        avg = max(1, int(table.nbytes) // max(1, int(table.num_rows)))
        return max(1, min(self.row_group_rows, self.row_group_bytes // avg))

    def close(self) -> list[WrittenFile]:
        """Flush the rest; returns every file this writer published."""
        if not self._closed:
            self.flush()
            self._closed = True
        return self.files

    def abort(self) -> None:
        """Drop buffered rows without writing (files already published stay)."""
        self._buffer, self._buffered_rows, self._buffered_bytes = [], 0, 0
        self._closed = True

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # On an error, publish nothing more: the caller decides what a partial run means.
        if exc_type is None:
            self.close()
        else:
            self.abort()


class TableSink:
    """Every table of one flow run, written in a reader-safe order.

    :meth:`add_many` takes finished items. The nested tables (words, utterances, ...) go to
    their writers right away (they are the bulk and flush by size); transcripts rows are
    published only after the rows they describe (:meth:`close` flushes those first, and a
    transcripts flush triggered by size also flushes them first), so a reader that sees a
    transcripts row also sees its words.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | OutputRoot,
        *,
        flow_run_id: str,
        run_date: dt.date,
        filesystem: Any | None = None,
        max_buffer_rows: int = 500_000,
        max_transcripts_buffered: int = 10_000,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.run_date = run_date

        output = OutputRoot.of(root, filesystem=filesystem)

        def writer(table: str, rows: int, max_bytes: int = 256 * 1024 * 1024) -> DatasetWriter:
            return DatasetWriter(
                output,
                table,
                flow_run_id=flow_run_id,
                filesystem=filesystem,
                max_buffer_rows=rows,
                max_buffer_bytes=max_bytes,
            )

        self.nested = [writer(t.name, max_buffer_rows) for t in NESTED]
        # Flushed by this class (never by size inside the writer), so that ordering holds.
        self.transcripts = writer("transcripts", 2**62, 2**62)
        self.writers = [*self.nested, self.transcripts]
        self.max_transcripts_buffered = max_transcripts_buffered

    def add(
        self,
        media_id: str,
        transcript: Any | None,
        *,
        source: str,
        options_hash: str,
        **row_fields: Any,
    ) -> None:
        """Record one finished item (see ``transcript_row`` for the keyword fields); raises
        if its rows cannot be built."""
        fields = {"source": source, "options_hash": options_hash, **row_fields}
        (error,) = self.add_many([(media_id, transcript, fields)])
        if error is not None:
            raise error

    def add_many(self, entries: Sequence[SinkEntry]) -> list[Exception | None]:
        """Record finished items, one batch per table; returns each entry's error, or None.

        An entry is ``(media_id, transcript, fields)``, ``fields`` being the keyword arguments
        of ``transcript_row`` other than ``flow_run_id``/``run_date``. An entry whose rows
        cannot be built (a malformed transcript) writes nothing and gets its exception; the
        others are written all the same. Errors of the writers themselves (I/O) are raised.
        """
        try:
            batches = self._batches(entries)
            errors: list[Exception | None] = [None] * len(entries)
        except MALFORMED as exc:
            if len(entries) == 1:
                return [exc]
            # Rare: find the culprits one by one, then build the others together again.
            errors = [self._malformed(entry) for entry in entries]
            good = [entry for entry, error in zip(entries, errors, strict=True) if error is None]
            batches = self._batches(good)
        # Everything is built before anything is written: an entry is written whole or not at
        # all. The nested tables first, transcripts last (see the class docstring).
        for w in self.writers:
            w.write(batches[w.table])
        if self.transcripts._buffered_rows >= self.max_transcripts_buffered:
            self.flush()
        return errors

    def _batches(self, entries: Sequence[SinkEntry]) -> dict[str, pa.RecordBatch]:
        return normalize(entries, flow_run_id=self.flow_run_id, run_date=self.run_date)

    def _malformed(self, entry: SinkEntry) -> Exception | None:
        try:
            self._batches([entry])
        except MALFORMED as exc:
            return exc
        return None

    def flush(self) -> None:
        for w in self.writers:
            w.flush()

    def close(self) -> dict[str, list[WrittenFile]]:
        """Flush everything. Once a run has written rows, every table exists: one it wrote no
        rows to and that has no files yet gets one empty file (with its schema). A run that
        wrote no rows at all writes nothing, so a run with nothing to do leaves no trace."""
        self.flush()
        writers = self.writers
        if any(w.files for w in writers):
            for w in writers:
                if not w.files and not w._closed and not w.exists():
                    w.write_empty(self.run_date)
        return {w.table: w.close() for w in writers}

    def __enter__(self) -> TableSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            for w in self.writers:
                w.abort()
