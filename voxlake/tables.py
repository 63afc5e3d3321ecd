"""The output tables: explicit Arrow schemas, transcript -> record batches, atomic Parquet writes.

Three tables, each a hive-partitioned Parquet dataset under one output root::

    <root>/transcripts/run_date=YYYY-MM-DD/part-<prefix>-<seq>.parquet   one row per item per run
    <root>/words/run_date=YYYY-MM-DD/part-<prefix>-<seq>.parquet         one row per word
    <root>/utterances/run_date=YYYY-MM-DD/part-<prefix>-<seq>.parquet    one row per speaker turn

Schemas are written out here, never inferred from data: a run where every ``speaker`` happens to
be null must still produce a ``string`` column, or readers that union runs break. Column docs live
in the field metadata (key ``description``) and ``docs/tables.md`` is generated from them
(:func:`schema_markdown`; a test keeps the two in sync).

Order of writes matters for readers: a ``transcripts`` row is the commit record of an item, so
:class:`TableSink` flushes words and utterances *before* the transcripts that describe them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from voxlake.redact import redact_text
from voxlake.storage import S3Options, is_s3_url, s3_filesystem, s3_path

__all__ = [
    "PARTITION_COLUMN",
    "SCHEMAS",
    "TRANSCRIPTS_SCHEMA",
    "UTTERANCES_SCHEMA",
    "WORDS_SCHEMA",
    "DatasetWriter",
    "SinkEntry",
    "TableSink",
    "WrittenFile",
    "read_current",
    "read_table",
    "schema_markdown",
    "transcript_row",
    "transcripts_batch",
    "utterances_batch",
    "words_batch",
]

PARTITION_COLUMN = "run_date"
_UTC_US = pa.timestamp("us", tz="UTC")


def _f(name: str, type_: pa.DataType, description: str, *, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


_RUN_DATE = _f(
    PARTITION_COLUMN,
    pa.date32(),
    "UTC date the flow run started; the hive partition (`run_date=YYYY-MM-DD` folder), not "
    "stored inside the files",
    nullable=False,
)

TRANSCRIPTS_SCHEMA = pa.schema(
    [
        _f(
            "media_id",
            pa.string(),
            "Stable key of the media item (docs/manifest.md)",
            nullable=False,
        ),
        _f(
            "source",
            pa.string(),
            "Absolute local path, `s3://` URL or URL that was transcribed (signed query strings "
            "removed)",
            nullable=False,
        ),
        _f("source_size", pa.int64(), "Size of the source in bytes; null when unknown (URLs)"),
        _f(
            "source_fingerprint",
            pa.string(),
            "Identity of the source bytes: `size:mtime_ns` for local files (`:sha256=<hex>` "
            "appended with content hashing), `s3:size:etag:last_modified` for S3 objects; null "
            "when unknown (URLs)",
        ),
        _f("transcript_id", pa.string(), "AssemblyAI transcript id; null if never submitted"),
        _f("status", pa.string(), "`completed` or `error`", nullable=False),
        _f("error", pa.string(), "Why the item failed (AssemblyAI or voxlake message); null if ok"),
        _f("text", pa.string(), "Full transcript text"),
        _f("confidence", pa.float64(), "Transcript-level confidence, 0..1"),
        _f("audio_duration_s", pa.float64(), "Audio duration in seconds, as AssemblyAI reports it"),
        _f("language_code", pa.string(), "Language of the transcript (e.g. `en_us`)"),
        _f("speech_model", pa.string(), "Speech model AssemblyAI used (`speech_model_used`)"),
        _f(
            "word_count", pa.int64(), "Number of rows this transcript has in `words`; null if error"
        ),
        _f(
            "options_hash",
            pa.string(),
            "Fingerprint of the effective transcription options (manifest.options_hash)",
            nullable=False,
        ),
        _f("submitted_at", _UTC_US, "When voxlake submitted the transcript (UTC)"),
        _f("completed_at", _UTC_US, "When voxlake saw the final status (UTC)"),
        _f(
            "recorded_at",
            _UTC_US,
            "When voxlake wrote this row (UTC); orders a media item's outcomes across runs",
            nullable=False,
        ),
        _f("flow_run_id", pa.string(), "Prefect flow run that produced the row", nullable=False),
        _RUN_DATE,
    ],
    metadata={"description": "One row per media item per flow run."},
)

WORDS_SCHEMA = pa.schema(
    [
        _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
        _f("transcript_id", pa.string(), "AssemblyAI transcript id", nullable=False),
        _f(
            "word_index",
            pa.int32(),
            "Position of the word in the transcript, from 0",
            nullable=False,
        ),
        _f(
            "text",
            pa.string(),
            "The word as transcribed (with punctuation if enabled)",
            nullable=False,
        ),
        _f("start_ms", pa.int64(), "Start time in the audio, milliseconds"),
        _f("end_ms", pa.int64(), "End time in the audio, milliseconds"),
        _f("confidence", pa.float64(), "Word confidence, 0..1"),
        _f("speaker", pa.string(), "Speaker label (`A`, `B`, ...) when speaker_labels is on"),
        _f("channel", pa.string(), "Audio channel (`1`, `2`, ...) when multichannel is on"),
        _f("flow_run_id", pa.string(), "Prefect flow run that wrote the row", nullable=False),
        _RUN_DATE,
    ],
    metadata={"description": "One row per transcribed word."},
)

UTTERANCES_SCHEMA = pa.schema(
    [
        _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
        _f("transcript_id", pa.string(), "AssemblyAI transcript id", nullable=False),
        _f("utterance_index", pa.int32(), "Position of the utterance, from 0", nullable=False),
        _f("speaker", pa.string(), "Speaker label (`A`, `B`, ...)"),
        _f("channel", pa.string(), "Audio channel when multichannel is on"),
        _f("start_ms", pa.int64(), "Start time in the audio, milliseconds"),
        _f("end_ms", pa.int64(), "End time in the audio, milliseconds"),
        _f("confidence", pa.float64(), "Utterance confidence, 0..1"),
        _f("text", pa.string(), "What was said in this turn", nullable=False),
        _f("flow_run_id", pa.string(), "Prefect flow run that wrote the row", nullable=False),
        _RUN_DATE,
    ],
    metadata={
        "description": "One row per speaker turn; only for transcripts with speaker_labels or "
        "multichannel on."
    },
)

SCHEMAS: dict[str, pa.Schema] = {
    "transcripts": TRANSCRIPTS_SCHEMA,
    "words": WORDS_SCHEMA,
    "utterances": UTTERANCES_SCHEMA,
}


def _file_schema(schema: pa.Schema) -> pa.Schema:
    """The schema stored in each file: the partition column lives in the folder name only."""
    return schema.remove(schema.get_field_index(PARTITION_COLUMN))


def schema_markdown(schema: pa.Schema) -> str:
    """A Markdown table (column, type, nullable, meaning) for docs/tables.md."""
    lines = ["| column | type | null? | meaning |", "|---|---|---|---|"]
    for f in schema:
        desc = (f.metadata or {}).get(b"description", b"").decode()
        lines.append(f"| `{f.name}` | `{f.type}` | {'yes' if f.nullable else 'no'} | {desc} |")
    return "\n".join(lines)


# --- transcript -> batches --------------------------------------------------------------------


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Field access for both plain dicts (raw JSON) and objects (voxlake.models.Transcript)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _column(lists: Sequence[Sequence[Any]], name: str) -> list[Any]:
    # One comprehension per transcript and column (not per-row pyarrow calls): this is the hot
    # loop for millions of words, and a list comprehension with a bound .get is the fastest
    # pure-Python way to pull one field out of many dicts. Dict or object is decided per
    # transcript, so a batch may mix raw JSON and models.
    out: list[Any] = []
    for items in lists:
        if not items:
            continue
        if isinstance(items[0], Mapping):
            values = [w.get(name) for w in items]
        else:
            values = [getattr(w, name, None) for w in items]
        if out:
            out += values
        else:
            out = values  # no copy of the first (for a long transcript, the only) list
    return out


def _string_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        # e.g. a channel given as an int by some producer: the table type is still string.
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _constant(value: Any, n: int, type_: pa.DataType) -> pa.Array:
    # repeat() builds the column in C instead of a Python list of n equal values.
    return pa.repeat(pa.scalar(value, type=type_), n)


def _batch(schema: pa.Schema, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    batch = pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)
    _check_not_null(batch, schema)
    return batch


def _check_not_null(data: pa.RecordBatch | pa.Table, schema: pa.Schema) -> None:
    # Arrow does not enforce nullable=False when building from arrays; Parquet readers would then
    # see nulls in a REQUIRED column. null_count is O(1) (cached per array).
    for f in schema:
        if not f.nullable and f.name in data.column_names and data.column(f.name).null_count:
            raise ValueError(f"column {f.name!r} must not contain nulls")


def _transcript_id(transcript: Any) -> str:
    tid = _get(transcript, "id")
    if not tid:
        raise ValueError("transcript has no id")
    return str(tid)


def _nested_rows(
    items: Sequence[tuple[str, Any]],
    field: str,
    index_name: str,
    *,
    flow_run_id: str,
    run_date: dt.date,
) -> tuple[list[Sequence[Any]], dict[str, pa.Array]]:
    """The rows nested under ``field`` (words, utterances) of each ``(media_id, transcript)``,
    and the columns every such table has: the item's keys, the row's position within its
    transcript, ``flow_run_id`` and ``run_date``."""
    lists = [_get(t, field) or [] for _, t in items]
    if len(items) == 1:  # one (often long) transcript: constants in C, no index arithmetic
        ((media_id, transcript),) = items
        n = len(lists[0])
        return lists, {
            "media_id": _constant(media_id, n, pa.string()),
            "transcript_id": _constant(_transcript_id(transcript), n, pa.string()),
            index_name: pa.array(np.arange(n, dtype=np.int32)),
            "flow_run_id": _constant(flow_run_id, n, pa.string()),
            PARTITION_COLUMN: _constant(run_date, n, pa.date32()),
        }
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    n = int(counts.sum())
    # Each transcript's keys are repeated over its rows with one take() per column for the
    # whole batch: per-transcript pa.repeat calls cost more than the words of a short one.
    owner = pa.array(np.repeat(np.arange(len(items)), counts))
    first_row = np.repeat(np.cumsum(counts) - counts, counts)
    columns = {
        "media_id": pa.array([m for m, _ in items], pa.string()).take(owner),
        "transcript_id": pa.array([_transcript_id(t) for _, t in items], pa.string()).take(owner),
        index_name: pa.array((np.arange(n) - first_row).astype(np.int32)),
        "flow_run_id": _constant(flow_run_id, n, pa.string()),
        PARTITION_COLUMN: _constant(run_date, n, pa.date32()),
    }
    return lists, columns


def words_batch(
    items: Sequence[tuple[str, Any]],
    *,
    flow_run_id: str,
    run_date: dt.date,
) -> pa.RecordBatch:
    """The ``words`` rows of ``(media_id, transcript)`` pairs, in order, as one batch.

    A transcript is a dict or an object such as ``models.Transcript``. Words are taken as
    AssemblyAI returns them (``start``/``end`` in ms); ``word_index`` is their position in their
    transcript. Transcripts without words give no rows (an empty batch has the same schema).
    """
    words, columns = _nested_rows(
        items, "words", "word_index", flow_run_id=flow_run_id, run_date=run_date
    )
    columns |= {
        "text": _string_array(_column(words, "text")),
        "start_ms": pa.array(_column(words, "start"), type=pa.int64()),
        "end_ms": pa.array(_column(words, "end"), type=pa.int64()),
        "confidence": pa.array(_column(words, "confidence"), type=pa.float64()),
        "speaker": _string_array(_column(words, "speaker")),
        "channel": _string_array(_column(words, "channel")),
    }
    return _batch(WORDS_SCHEMA, columns)


def utterances_batch(
    items: Sequence[tuple[str, Any]],
    *,
    flow_run_id: str,
    run_date: dt.date,
) -> pa.RecordBatch:
    """The ``utterances`` rows of ``(media_id, transcript)`` pairs; none for a transcript
    without utterances (no speaker labels)."""
    utterances, columns = _nested_rows(
        items, "utterances", "utterance_index", flow_run_id=flow_run_id, run_date=run_date
    )
    columns |= {
        "speaker": _string_array(_column(utterances, "speaker")),
        "channel": _string_array(_column(utterances, "channel")),
        "start_ms": pa.array(_column(utterances, "start"), type=pa.int64()),
        "end_ms": pa.array(_column(utterances, "end"), type=pa.int64()),
        "confidence": pa.array(_column(utterances, "confidence"), type=pa.float64()),
        "text": _string_array(_column(utterances, "text")),
    }
    return _batch(UTTERANCES_SCHEMA, columns)


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    # Naive datetimes are taken as UTC: AssemblyAI's own timestamps carry no zone and are UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def transcript_row(
    media_id: str,
    transcript: Any | None,
    *,
    source: str,
    options_hash: str,
    flow_run_id: str,
    run_date: dt.date,
    source_size: int | None = None,
    source_fingerprint: str | None = None,
    submitted_at: dt.datetime | None = None,
    completed_at: dt.datetime | None = None,
    error: str | None = None,
    transcript_id: str | None = None,
    recorded_at: dt.datetime | None = None,
) -> dict[str, Any]:
    """One ``transcripts`` row as a dict (feed a list of them to :func:`transcripts_batch`).

    ``transcript`` is the final transcript (dict or object), or ``None`` when the item failed
    before AssemblyAI had one (upload error, invalid manifest row): then ``error`` is required and
    the row has status ``error``. ``error`` also overrides the transcript's own error text.
    ``transcript_id`` names the job of an item that failed after submission (a poll timeout), so
    the row says which job to resume. ``recorded_at`` defaults to now (tests inject it).
    """
    if transcript is None:
        if not error:
            raise ValueError(f"{media_id}: a row without a transcript needs an error message")
        status, tid, words = "error", transcript_id, None
    else:
        status = str(_enum_value(_get(transcript, "status")))
        if status not in ("completed", "error"):
            raise ValueError(
                f"{media_id}: transcript {_get(transcript, 'id')} is {status!r}; only final "
                "transcripts (completed or error) are written"
            )
        tid = _transcript_id(transcript)
        words = _get(transcript, "words")
        error = error or _get(transcript, "error")
        if status == "error" and not error:
            error = "transcript failed without an error message"
    completed = status == "completed"
    duration = _get(transcript, "audio_duration") if transcript is not None else None
    # A presigned URL is a credential: its query string never reaches a table (nor does one
    # quoted in an error message, as AssemblyAI's download errors do).
    source = redact_text(source) or source
    error = redact_text(error)
    return {
        "media_id": media_id,
        "source": source,
        "source_size": source_size,
        "source_fingerprint": source_fingerprint,
        "transcript_id": tid,
        "status": status,
        "error": None if completed else error,
        "text": _get(transcript, "text") if completed else None,
        "confidence": _get(transcript, "confidence") if completed else None,
        "audio_duration_s": float(duration) if completed and duration is not None else None,
        "language_code": _get(transcript, "language_code") if completed else None,
        "speech_model": (
            _get(transcript, "speech_model_used") or _enum_value(_get(transcript, "speech_model"))
            if completed
            else None
        ),
        # Must equal the rows words_batch writes for this transcript (check_invariants).
        "word_count": len(words or []) if completed else None,
        "options_hash": options_hash,
        "submitted_at": _utc(submitted_at),
        "completed_at": _utc(completed_at),
        # completed_at is null for items that failed before submission, and a rerun may adopt
        # an older job: only the write time orders one item's rows across runs.
        "recorded_at": _utc(recorded_at) or dt.datetime.now(dt.UTC),
        "flow_run_id": flow_run_id,
        PARTITION_COLUMN: run_date,
    }


def transcripts_batch(rows: Iterable[Mapping[str, Any]]) -> pa.RecordBatch:
    """``transcripts`` rows (from :func:`transcript_row`) as one batch with the exact schema."""
    rows = list(rows)
    names = set(TRANSCRIPTS_SCHEMA.names)
    for i, row in enumerate(rows):
        if set(row) != names:
            missing, extra = sorted(names - set(row)), sorted(set(row) - names)
            raise ValueError(f"transcripts row {i}: missing {missing}, unexpected {extra}")
    columns = {f.name: pa.array([r[f.name] for r in rows], type=f.type) for f in TRANSCRIPTS_SCHEMA}
    return _batch(TRANSCRIPTS_SCHEMA, columns)


def _resolve_root(
    root: str | os.PathLike[str], filesystem: Any | None, s3: S3Options | None = None
) -> tuple[Any, str]:
    """``(filesystem, root)``: an ``s3://`` root without a filesystem gets s3fs with ``s3``
    (default: the AWS credential chain, ``AWS_ENDPOINT_URL_S3``, ...)."""
    text = os.fspath(root)
    if filesystem is None and is_s3_url(text):
        return s3_filesystem(s3), s3_path(text)
    return filesystem, text


def _fsspec_of(fs: pafs.FileSystem) -> Any | None:
    """The fsspec filesystem behind a pyarrow wrapper (s3fs, memory, ...), else None."""
    handler = getattr(fs, "handler", None)
    return handler.fs if isinstance(handler, pafs.FSSpecHandler) else None


def _as_arrow_fs(filesystem: Any | None) -> pafs.FileSystem:
    if filesystem is None:
        return pafs.LocalFileSystem()
    if isinstance(filesystem, pafs.FileSystem):
        return filesystem
    # An fsspec filesystem (s3fs, memory, ...): pyarrow wraps it with the same interface.
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))


def _is_local(fs: pafs.FileSystem) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def _atomic_write(fs: pafs.FileSystem, path: str, table: pa.Table, **parquet_options: Any) -> None:
    """Publish ``table`` at ``path`` so that no reader ever sees a partial file.

    The one place that knows how: locally, write a hidden temp file in the same directory (same
    filesystem, so the rename is atomic), fsync it, then ``os.replace``. The temp name starts
    with ``.`` (skipped by pyarrow.dataset, Spark, pandas) and ends in ``.tmp`` (not matched by
    ``*.parquet`` globs such as DuckDB's).

    On an object store nothing is visible until the upload completes: an s3fs file is one PUT
    when small, otherwise a multipart upload completed on close. The Parquet bytes are streamed
    into it (no local temp file; s3fs buffers one part); if writing fails, the multipart upload
    is aborted instead of completed, so a partial object is never published. No directories are
    created on object stores (s3fs would create a missing *bucket*).
    """
    directory, name = path.rsplit("/", 1)
    if not _is_local(fs):
        fsspec_fs = _fsspec_of(fs)
        if fsspec_fs is None:
            # A native pyarrow object store (pyarrow.fs.S3FileSystem): serialise first, then
            # one write, so a failure while encoding never touches the store.
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, **parquet_options)
            with fs.open_output_stream(path) as out:
                out.write(sink.getvalue())
            return
        protocols = fsspec_fs.protocol
        if {"file", "local"} & set([protocols] if isinstance(protocols, str) else protocols):
            fsspec_fs.makedirs(directory, exist_ok=True)  # real folders only, never buckets
        f = fsspec_fs.open(path, "wb")
        try:
            pq.write_table(table, f, **parquet_options)
        except BaseException:
            discard = getattr(f, "discard", None)
            with contextlib.suppress(Exception):
                if discard is not None:
                    discard()  # s3fs: abort the multipart upload
            f.closed = True  # never commit what was buffered
            raise
        f.close()  # the commit: one PUT, or CompleteMultipartUpload
        return
    fs.create_dir(directory, recursive=True)
    tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, **parquet_options)
            f.flush()
            # Without fsync a crash after the rename can leave a complete name with empty data.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class WrittenFile:
    path: str
    rows: int


class DatasetWriter:
    """Appends batches of one table to ``<root>/<table>/run_date=.../part-<prefix>-<seq>.parquet``.

    Memory-bounded: batches are buffered until ``max_buffer_rows`` rows or ``max_buffer_bytes``
    bytes, then written as one file per partition (row groups of at most ``row_group_rows`` rows
    and roughly ``row_group_bytes``). :meth:`close` writes the rest. Every file is published
    atomically (:func:`_atomic_write`).

    File names are unique per writer: ``prefix`` is ``<flow_run_id>-<8 hex>`` (or a uuid), so
    several tasks of one flow run, or a retried flow run, never overwrite each other's files.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
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
        if table not in SCHEMAS:
            raise ValueError(f"unknown table {table!r}; expected one of {sorted(SCHEMAS)}")
        filesystem, root = _resolve_root(root, filesystem)
        self.fs = _as_arrow_fs(filesystem)
        root_text = os.fspath(root)
        if _is_local(self.fs):
            root_text = os.path.abspath(root_text)
        self.root = root_text.rstrip("/")
        self.table = table
        self.schema = SCHEMAS[table]
        self._file_schema = _file_schema(self.schema)
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
        _check_not_null(data, self.schema)
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
            path = (
                f"{self.root}/{self.table}/{PARTITION_COLUMN}={date.isoformat()}/"
                f"part-{self.prefix}-{self._seq:05d}.parquet"
            )
            self._seq += 1
            _atomic_write(
                self.fs,
                path,
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
        path = (
            f"{self.root}/{self.table}/{PARTITION_COLUMN}={run_date.isoformat()}/"
            f"part-{self.prefix}-{self._seq:05d}.parquet"
        )
        self._seq += 1
        _atomic_write(self.fs, path, self._file_schema.empty_table(), compression=self.compression)
        written = WrittenFile(path, 0)
        self.files.append(written)
        return written

    def exists(self) -> bool:
        """True once the table's folder exists under the root (an earlier run wrote it)."""
        info = self.fs.get_file_info(f"{self.root}/{self.table}")
        return bool(info.type != pafs.FileType.NotFound)

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


SinkEntry = tuple[str, Any | None, Mapping[str, Any]]
"""``(media_id, transcript or None, transcript_row keyword fields)``: one item for the sink."""

# What building one item's rows raises when its data does not fit the schema: transcript_row's
# checks (ValueError), pyarrow conversions (ArrowInvalid is a ValueError, ArrowTypeError a
# TypeError) and integers beyond int64 (OverflowError).
_MALFORMED = (ValueError, TypeError, ArithmeticError)


class TableSink:
    """The three tables of one flow run, written in a reader-safe order.

    :meth:`add_many` takes finished items. Words and utterances go to their writers right away
    (they are the bulk and flush by size); transcripts rows are published only after the words
    and utterances they describe (:meth:`close` flushes those first, and a transcripts flush
    triggered by size also flushes them first), so a reader that sees a transcripts row also
    sees its words.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        flow_run_id: str,
        run_date: dt.date,
        filesystem: Any | None = None,
        max_buffer_rows: int = 500_000,
        max_transcripts_buffered: int = 10_000,
    ) -> None:
        self.flow_run_id = flow_run_id
        self.run_date = run_date

        def writer(table: str, rows: int, max_bytes: int = 256 * 1024 * 1024) -> DatasetWriter:
            return DatasetWriter(
                root,
                table,
                flow_run_id=flow_run_id,
                filesystem=filesystem,
                max_buffer_rows=rows,
                max_buffer_bytes=max_bytes,
            )

        self.words = writer("words", max_buffer_rows)
        self.utterances = writer("utterances", max_buffer_rows)
        # Flushed by this class (never by size inside the writer), so that ordering holds.
        self.transcripts = writer("transcripts", 2**62, 2**62)
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
        """Record one finished item (see :func:`transcript_row` for the keyword fields); raises
        if its rows cannot be built."""
        fields = {"source": source, "options_hash": options_hash, **row_fields}
        (error,) = self.add_many([(media_id, transcript, fields)])
        if error is not None:
            raise error

    def add_many(self, entries: Sequence[SinkEntry]) -> list[Exception | None]:
        """Record finished items, one batch per table; returns each entry's error, or None.

        An entry is ``(media_id, transcript, fields)``, ``fields`` being the keyword arguments
        of :func:`transcript_row` other than ``flow_run_id``/``run_date``. An entry whose rows
        cannot be built (a malformed transcript) writes nothing and gets its exception; the
        others are written all the same. Errors of the writers themselves (I/O) are raised.
        """
        try:
            words, utterances, transcripts = self._batches(entries)
            errors: list[Exception | None] = [None] * len(entries)
        except _MALFORMED as exc:
            if len(entries) == 1:
                return [exc]
            # Rare: find the culprits one by one, then build the others together again.
            errors = [self._malformed(entry) for entry in entries]
            good = [entry for entry, error in zip(entries, errors, strict=True) if error is None]
            words, utterances, transcripts = self._batches(good)
        # Everything is built before anything is written: an entry is written whole or not at
        # all. Words and utterances first (see the class docstring).
        self.words.write(words)
        self.utterances.write(utterances)
        self.transcripts.write(transcripts)
        if self.transcripts._buffered_rows >= self.max_transcripts_buffered:
            self.flush()
        return errors

    def _batches(
        self, entries: Sequence[SinkEntry]
    ) -> tuple[pa.RecordBatch, pa.RecordBatch, pa.RecordBatch]:
        run, day = self.flow_run_id, self.run_date
        rows = [
            transcript_row(m, t, flow_run_id=run, run_date=day, **fields)
            for m, t, fields in entries
        ]
        completed = [
            (m, t)
            for (m, t, _), row in zip(entries, rows, strict=True)
            if row["status"] == "completed"
        ]
        return (
            words_batch(completed, flow_run_id=run, run_date=day),
            utterances_batch(completed, flow_run_id=run, run_date=day),
            transcripts_batch(rows),
        )

    def _malformed(self, entry: SinkEntry) -> Exception | None:
        try:
            self._batches([entry])
        except _MALFORMED as exc:
            return exc
        return None

    def flush(self) -> None:
        self.words.flush()
        self.utterances.flush()
        self.transcripts.flush()

    def close(self) -> dict[str, list[WrittenFile]]:
        """Flush everything. Once a run has written rows, every table exists: one it wrote no
        rows to and that has no files yet gets one empty file (with its schema). A run that
        wrote no rows at all writes nothing, so a run with nothing to do leaves no trace."""
        self.flush()
        writers = (self.words, self.utterances, self.transcripts)
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
            for w in (self.words, self.utterances, self.transcripts):
                w.abort()


# --- reading ----------------------------------------------------------------------------------


def read_table(
    root: str | os.PathLike[str],
    table: str,
    *,
    filesystem: Any | None = None,
    filter: pc.Expression | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Read one table back with its declared schema (run_date typed as a date from the folder).

    Hidden and ``_``-prefixed files (in-flight temp files) are ignored by pyarrow.dataset. A
    table that was never written reads as an empty table with the full schema.
    """
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(SCHEMAS)}")
    schema = SCHEMAS[table]
    filesystem, root = _resolve_root(root, filesystem)
    fs = _as_arrow_fs(filesystem)
    root_text = os.fspath(root)
    if _is_local(fs):
        root_text = os.path.abspath(root_text)
    path = f"{root_text.rstrip('/')}/{table}"
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    # Imported here: pyarrow.dataset imports pandas (~1 s), which writing never needs.
    import pyarrow.dataset as ds

    partitioning = ds.partitioning(pa.schema([_RUN_DATE]), flavor="hive")
    dataset = ds.dataset(
        path, format="parquet", partitioning=partitioning, schema=schema, filesystem=fs
    )
    return dataset.to_table(filter=filter, columns=columns)


# Row order of read_current: the key of each table's rows within the current view.
_CURRENT_ORDER = {
    "transcripts": "media_id",
    "words": "media_id, word_index",
    "utterances": "media_id, utterance_index",
}


def read_current(
    root: str | os.PathLike[str],
    table: str = "transcripts",
    *,
    filesystem: Any | None = None,
) -> pa.Table:
    """The current view of one table (``transcripts_current``, ``words_current`` or
    ``utterances_current``; see ``voxlake/sql/views.sql``) with its declared schema.

    One row per ``media_id`` in ``transcripts`` (its latest completed row by ``recorded_at``, else
    its latest row); the words or utterances of those completed rows. Computed by the DuckDB
    views themselves, so Python and SQL users get exactly the same rows. Sorted by ``media_id``
    (then ``word_index`` / ``utterance_index``).
    """
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(SCHEMAS)}")
    from voxlake.views import connect  # views imports this module

    schema = SCHEMAS[table]
    columns = ", ".join(f'"{name}"' for name in schema.names)
    with connect(root, filesystem=filesystem) as con:
        result = con.sql(
            f"SELECT {columns} FROM {table}_current ORDER BY {_CURRENT_ORDER[table]}"
        ).to_arrow_table()
    # DuckDB names the zone Etc/UTC and marks every column nullable: back to the declared types.
    return pa.Table.from_arrays(
        [c.cast(f.type) for c, f in zip(result.columns, schema, strict=True)], schema=schema
    )
