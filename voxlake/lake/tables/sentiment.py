"""The ``sentiment`` table: one row per sentence of ``sentiment_analysis_results``."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from voxlake.lake.tables.results import objects, result_rows
from voxlake.lake.tables.rows import get
from voxlake.lake.tables.schema import FLOW_RUN_ID, RUN_DATE, Table
from voxlake.lake.tables.schema import field as _f

SENTIMENT_SCHEMA = pa.schema(
    [
        _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
        _f("transcript_id", pa.string(), "AssemblyAI transcript id", nullable=False),
        _f("sentence_index", pa.int32(), "Position of the sentence, from 0", nullable=False),
        _f("text", pa.string(), "The sentence"),
        _f("start_ms", pa.int64(), "Start time in the audio, milliseconds"),
        _f("end_ms", pa.int64(), "End time in the audio, milliseconds"),
        _f("sentiment", pa.string(), "`POSITIVE`, `NEUTRAL` or `NEGATIVE`"),
        _f("confidence", pa.float64(), "Confidence in the sentiment, 0..1"),
        _f("speaker", pa.string(), "Speaker label when speaker_labels is on"),
        _f("channel", pa.string(), "Audio channel when multichannel is on"),
        FLOW_RUN_ID,
        RUN_DATE,
    ],
    metadata={"description": "One row per sentence; only for transcripts with sentiment_analysis."},
)


def sentences(transcript: Any) -> list[dict[str, Any]]:
    return [
        {
            "text": s.get("text"),
            "start_ms": s.get("start"),
            "end_ms": s.get("end"),
            "sentiment": s.get("sentiment"),
            "confidence": s.get("confidence"),
            "speaker": s.get("speaker"),
            "channel": s.get("channel"),
        }
        for s in objects(
            get(transcript, "sentiment_analysis_results"), "sentiment_analysis_results"
        )
    ]


TABLE = Table(
    "sentiment",
    SENTIMENT_SCHEMA,
    "media_id, sentence_index",
    result_rows(SENTIMENT_SCHEMA, "sentence_index", sentences),
)
