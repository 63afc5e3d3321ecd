"""The ``utterances`` table: one row per speaker turn (speaker labels or multichannel on)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from voxlake.lake.tables.rows import column, nested_rows, string_array
from voxlake.lake.tables.schema import FLOW_RUN_ID, RUN_DATE, Table, batch
from voxlake.lake.tables.schema import field as _f

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
        FLOW_RUN_ID,
        RUN_DATE,
    ],
    metadata={
        "description": "One row per speaker turn; only for transcripts with speaker_labels or "
        "multichannel on."
    },
)


def utterances_batch(
    items: Sequence[tuple[str, Any]],
    *,
    flow_run_id: str,
    run_date: dt.date,
) -> pa.RecordBatch:
    """The ``utterances`` rows of ``(media_id, transcript)`` pairs; none for a transcript
    without utterances (no speaker labels)."""
    utterances, columns = nested_rows(
        items, "utterances", "utterance_index", flow_run_id=flow_run_id, run_date=run_date
    )
    columns |= {
        "speaker": string_array(column(utterances, "speaker")),
        "channel": string_array(column(utterances, "channel")),
        "start_ms": pa.array(column(utterances, "start"), type=pa.int64()),
        "end_ms": pa.array(column(utterances, "end"), type=pa.int64()),
        "confidence": pa.array(column(utterances, "confidence"), type=pa.float64()),
        "text": string_array(column(utterances, "text")),
    }
    return batch(UTTERANCES_SCHEMA, columns)


TABLE = Table("utterances", UTTERANCES_SCHEMA, "media_id, utterance_index", utterances_batch)
