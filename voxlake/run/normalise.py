"""Normalise: what the run adds to a transcript's rows, and what a written transcript means.

The rows themselves (transcript to Arrow batches) are built by the table sink
(:func:`voxlake.lake.tables.transcript_row` and its neighbours); this module gives them the fields
only the run knows, and turns a transcript whose rows were written into the item's outcome and
its ledger event (``completed`` or ``job_failed``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import TypedDict

from voxlake.lake.ledger import Event, Status
from voxlake.lake.normalize import SinkEntry
from voxlake.lake.tables import optional_tables_of, tables_record
from voxlake.models import Transcript, TranscriptStatus
from voxlake.redact import redact_text
from voxlake.run.state import ItemRecord

logger = logging.getLogger(__name__)


class RowFields(TypedDict):
    """An item's transcripts-row fields that the run knows (see tables.transcript_row)."""

    source: str
    options_hash: str
    source_size: int | None
    source_fingerprint: str | None
    submitted_at: dt.datetime | None
    completed_at: dt.datetime | None


def row_fields(rec: ItemRecord) -> RowFields:
    return {
        "source": rec.item.source,
        "options_hash": rec.item.options_hash,
        "source_size": rec.item.size,
        "source_fingerprint": rec.item.fingerprint,
        "submitted_at": rec.submitted_at,
        "completed_at": rec.completed_at,
    }


def sink_entries(group: Sequence[tuple[ItemRecord, Transcript]]) -> list[SinkEntry]:
    return [(rec.item.media_id, transcript, row_fields(rec)) for rec, transcript in group]


def outcome(rec: ItemRecord, transcript: Transcript) -> Event:
    """Record a final transcript whose rows were written on its item; its ledger event."""
    duration = float(transcript.audio_duration) if transcript.audio_duration is not None else None
    if transcript.status is TranscriptStatus.completed:
        rec.status = "completed"
        # A transcript with no words (silence) has a confidence of 0 that says nothing
        # about the recognition: it stays out of the means and the lowest confidences.
        rec.no_words = not transcript.words
        rec.confidence = None if rec.no_words else transcript.confidence
        rec.audio_duration_s = duration
        return Event(
            rec.item,
            Status.completed,
            transcript_id=transcript.id,
            audio_duration_s=duration,
            tables=tables_record(optional_tables_of(transcript)),
        )
    rec.status = "error"
    rec.failed_stage = "poll"
    rec.job_failed = True
    # The error text may quote a presigned audio_url: its query string is removed.
    rec.error = redact_text(transcript.error) or "transcript failed without an error message"
    logger.warning("%s failed at poll: %s", rec.item.media_id, rec.error)
    return Event(
        rec.item,
        Status.job_failed,
        transcript_id=transcript.id,
        stage="poll",
        error=rec.error,
    )
