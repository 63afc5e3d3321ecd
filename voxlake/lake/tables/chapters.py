"""The ``chapters`` table: one row per chapter of ``chapters`` (auto_chapters)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from voxlake.lake.tables.results import objects, result_rows
from voxlake.lake.tables.rows import get
from voxlake.lake.tables.schema import FLOW_RUN_ID, RUN_DATE, Table
from voxlake.lake.tables.schema import field as _f

CHAPTERS_SCHEMA = pa.schema(
    [
        _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
        _f("transcript_id", pa.string(), "AssemblyAI transcript id", nullable=False),
        _f("chapter_index", pa.int32(), "Position of the chapter, from 0", nullable=False),
        _f("start_ms", pa.int64(), "Start time in the audio, milliseconds"),
        _f("end_ms", pa.int64(), "End time in the audio, milliseconds"),
        _f("headline", pa.string(), "One-sentence headline of the chapter"),
        _f("gist", pa.string(), "A few words on what the chapter is about"),
        _f("summary", pa.string(), "A paragraph summarising the chapter"),
        FLOW_RUN_ID,
        RUN_DATE,
    ],
    metadata={"description": "One row per chapter; only for transcripts with auto_chapters."},
)


def chapters(transcript: Any) -> list[dict[str, Any]]:
    return [
        {
            "start_ms": c.get("start"),
            "end_ms": c.get("end"),
            "headline": c.get("headline"),
            "gist": c.get("gist"),
            "summary": c.get("summary"),
        }
        for c in objects(get(transcript, "chapters"), "chapters")
    ]


TABLE = Table(
    "chapters",
    CHAPTERS_SCHEMA,
    "media_id, chapter_index",
    result_rows(CHAPTERS_SCHEMA, "chapter_index", chapters),
)
