"""The ``words`` table: one row per transcribed word."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from voxlake.lake.tables.rows import column, nested_rows, string_array
from voxlake.lake.tables.schema import FLOW_RUN_ID, RUN_DATE, Table, batch
from voxlake.lake.tables.schema import field as _f

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
        FLOW_RUN_ID,
        RUN_DATE,
    ],
    metadata={"description": "One row per transcribed word."},
)


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
    words, columns = nested_rows(
        items, "words", "word_index", flow_run_id=flow_run_id, run_date=run_date
    )
    columns |= {
        "text": string_array(column(words, "text")),
        "start_ms": pa.array(column(words, "start"), type=pa.int64()),
        "end_ms": pa.array(column(words, "end"), type=pa.int64()),
        "confidence": pa.array(column(words, "confidence"), type=pa.float64()),
        "speaker": string_array(column(words, "speaker")),
        "channel": string_array(column(words, "channel")),
    }
    return batch(WORDS_SCHEMA, columns)


TABLE = Table("words", WORDS_SCHEMA, "media_id, word_index", words_batch)
