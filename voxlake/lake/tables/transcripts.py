"""The ``transcripts`` table: one row per media item per run, the commit record of an item.

Its rows are built from every finished item (completed, failed at AssemblyAI, or failed before
a job existed), not only from completed transcripts, so it has no ``rows`` in its
registration: :func:`transcript_row` and :func:`transcripts_batch` build them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from voxlake.lake.tables.rows import enum_value, get, utc
from voxlake.lake.tables.rows import transcript_id as transcript_id_of
from voxlake.lake.tables.schema import FLOW_RUN_ID, PARTITION_COLUMN, RUN_DATE, UTC_US, Table, batch
from voxlake.lake.tables.schema import field as _f
from voxlake.redact import redact_text

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
        _f("submitted_at", UTC_US, "When voxlake submitted the transcript (UTC)"),
        _f("completed_at", UTC_US, "When voxlake saw the final status (UTC)"),
        _f(
            "recorded_at",
            UTC_US,
            "When voxlake wrote this row (UTC); orders a media item's outcomes across runs",
            nullable=False,
        ),
        FLOW_RUN_ID,
        RUN_DATE,
    ],
    metadata={"description": "One row per media item per flow run."},
)


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
        status = str(enum_value(get(transcript, "status")))
        if status not in ("completed", "error"):
            raise ValueError(
                f"{media_id}: transcript {get(transcript, 'id')} is {status!r}; only final "
                "transcripts (completed or error) are written"
            )
        tid = transcript_id_of(transcript)
        words = get(transcript, "words")
        error = error or get(transcript, "error")
        if status == "error" and not error:
            error = "transcript failed without an error message"
    completed = status == "completed"
    duration = get(transcript, "audio_duration") if transcript is not None else None
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
        "text": get(transcript, "text") if completed else None,
        "confidence": get(transcript, "confidence") if completed else None,
        "audio_duration_s": float(duration) if completed and duration is not None else None,
        "language_code": get(transcript, "language_code") if completed else None,
        "speech_model": (
            get(transcript, "speech_model_used") or enum_value(get(transcript, "speech_model"))
            if completed
            else None
        ),
        # Must equal the rows words_batch writes for this transcript (check_invariants).
        "word_count": len(words or []) if completed else None,
        "options_hash": options_hash,
        "submitted_at": utc(submitted_at),
        "completed_at": utc(completed_at),
        # completed_at is null for items that failed before submission, and a rerun may adopt
        # an older job: only the write time orders one item's rows across runs.
        "recorded_at": utc(recorded_at) or dt.datetime.now(dt.UTC),
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
    return batch(TRANSCRIPTS_SCHEMA, columns)


TABLE = Table("transcripts", TRANSCRIPTS_SCHEMA, "media_id")
