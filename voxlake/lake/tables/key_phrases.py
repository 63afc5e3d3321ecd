"""The ``key_phrases`` table: one row per phrase of ``auto_highlights_result``."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from voxlake.lake.tables.results import objects, result, result_rows, span
from voxlake.lake.tables.schema import FLOW_RUN_ID, RUN_DATE, Table
from voxlake.lake.tables.schema import field as _f

TIMESTAMPS = pa.list_(pa.struct([("start_ms", pa.int64()), ("end_ms", pa.int64())]))

KEY_PHRASES_SCHEMA = pa.schema(
    [
        _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
        _f("transcript_id", pa.string(), "AssemblyAI transcript id", nullable=False),
        _f("phrase_index", pa.int32(), "Position in AssemblyAI's list, from 0", nullable=False),
        _f("text", pa.string(), "The key phrase"),
        _f("count", pa.int64(), "How many times it was said"),
        _f("rank", pa.float64(), "Relevance of the phrase to the whole transcript, 0..1"),
        _f(
            "timestamps",
            TIMESTAMPS,
            "Where it was said: a list of `{start_ms, end_ms}` (milliseconds), one per mention",
        ),
        FLOW_RUN_ID,
        RUN_DATE,
    ],
    metadata={"description": "One row per key phrase; only for transcripts with auto_highlights."},
)


def phrases(transcript: Any) -> list[dict[str, Any]]:
    out, name = [], "auto_highlights_result"
    for p in objects(result(transcript, name).get("results"), name):
        spans = [span(s) for s in objects(p.get("timestamps"), f"{name} timestamps")]
        out.append(
            {
                "text": p.get("text"),
                "count": p.get("count"),
                "rank": p.get("rank"),
                "timestamps": [{"start_ms": s, "end_ms": e} for s, e in spans],
            }
        )
    return out


TABLE = Table(
    "key_phrases",
    KEY_PHRASES_SCHEMA,
    "media_id, phrase_index",
    result_rows(KEY_PHRASES_SCHEMA, "phrase_index", phrases),
)
