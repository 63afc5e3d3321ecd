"""The ``sentences`` table: one row per sentence, from ``GET /v2/transcript/{id}/sentences``.

A transcript's own JSON has no sentences: the run fetches them after the transcript, only when
asked (``--sentences``; :mod:`voxlake.run.extras`), and sets them on the transcript as its
``sentences`` field, which the rows below read. A transcript without that field has no rows,
so the table is written (empty, with its schema) by every run, asked or not.

:func:`segment_schema` and :func:`segments_batch` also build ``paragraphs``
(:mod:`~voxlake.lake.tables.paragraphs`): the two endpoints return the same segment shape.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from voxlake.lake.tables.rows import column, get, nested_rows, string_array
from voxlake.lake.tables.schema import FLOW_RUN_ID, RUN_DATE, Table, batch
from voxlake.lake.tables.schema import field as _f


def segment_schema(kind: str, description: str) -> pa.Schema:
    """The schema of a table of ``kind`` segments (``sentence``, ``paragraph``)."""
    return pa.schema(
        [
            _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
            _f("transcript_id", pa.string(), "AssemblyAI transcript id", nullable=False),
            _f(
                f"{kind}_index",
                pa.int32(),
                f"Position of the {kind} in the transcript, from 0",
                nullable=False,
            ),
            _f("text", pa.string(), f"The {kind} as transcribed", nullable=False),
            _f("start_ms", pa.int64(), "Start time in the audio, milliseconds"),
            _f("end_ms", pa.int64(), "End time in the audio, milliseconds"),
            _f("confidence", pa.float64(), f"{kind.capitalize()} confidence, 0..1"),
            _f("speaker", pa.string(), "Speaker label (`A`, `B`, ...) when speaker_labels is on"),
            _f("channel", pa.string(), "Audio channel (`1`, `2`, ...) when multichannel is on"),
            _f("word_count", pa.int64(), f"Number of words in the {kind}", nullable=False),
            FLOW_RUN_ID,
            RUN_DATE,
        ],
        metadata={"description": description},
    )


def segment(value: Any) -> dict[str, Any]:
    """One sentence or paragraph (a model or raw JSON) as the fields its row needs: its words
    are counted, not kept, so a transcript's words are held once however many tables use them."""
    words = get(value, "words")
    return {
        "text": get(value, "text"),
        "start": get(value, "start"),
        "end": get(value, "end"),
        "confidence": get(value, "confidence"),
        "speaker": get(value, "speaker"),
        "channel": get(value, "channel"),
        "word_count": get(value, "word_count") if words is None else len(words),
    }


def segments_batch(
    schema: pa.Schema,
    field: str,
    index_name: str,
    items: Sequence[tuple[str, Any]],
    *,
    flow_run_id: str,
    run_date: dt.date,
) -> pa.RecordBatch:
    """The rows of each ``(media_id, transcript)``'s ``field`` segments, in order."""
    lists, columns = nested_rows(
        items, field, index_name, flow_run_id=flow_run_id, run_date=run_date
    )
    segments = [[segment(s) for s in segs] for segs in lists]
    columns |= {
        "text": string_array(column(segments, "text")),
        "start_ms": pa.array(column(segments, "start"), type=pa.int64()),
        "end_ms": pa.array(column(segments, "end"), type=pa.int64()),
        "confidence": pa.array(column(segments, "confidence"), type=pa.float64()),
        "speaker": string_array(column(segments, "speaker")),
        "channel": string_array(column(segments, "channel")),
        "word_count": pa.array(column(segments, "word_count"), type=pa.int64()),
    }
    return batch(schema, columns)


SENTENCES_SCHEMA = segment_schema(
    "sentence",
    "One row per sentence of each completed transcript; only for runs with `--sentences`.",
)


def sentences_batch(
    items: Sequence[tuple[str, Any]], *, flow_run_id: str, run_date: dt.date
) -> pa.RecordBatch:
    """The ``sentences`` rows of ``(media_id, transcript)`` pairs whose ``sentences`` field is
    set (:mod:`voxlake.run.extras`); none for the others."""
    return segments_batch(
        SENTENCES_SCHEMA,
        "sentences",
        "sentence_index",
        items,
        flow_run_id=flow_run_id,
        run_date=run_date,
    )


# Optional: only with --sentences. Version 2: the ledger records of version 1 were written for
# every item, filled or not, so they are not trusted (docs/ledger.md, "Re-collecting").
TABLE = Table(
    "sentences",
    SENTENCES_SCHEMA,
    "media_id, sentence_index",
    sentences_batch,
    version=2,
    optional=True,
)
