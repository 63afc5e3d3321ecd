"""The ``entities`` table: one row per entity of ``entities`` (entity_detection)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from voxlake.lake.tables.results import objects, result_rows
from voxlake.lake.tables.rows import get
from voxlake.lake.tables.schema import FLOW_RUN_ID, RUN_DATE, Table
from voxlake.lake.tables.schema import field as _f

ENTITIES_SCHEMA = pa.schema(
    [
        _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
        _f("transcript_id", pa.string(), "AssemblyAI transcript id", nullable=False),
        _f("entity_index", pa.int32(), "Position of the entity, from 0", nullable=False),
        _f("entity_type", pa.string(), "AssemblyAI's entity type (`person_name`, `location`, ...)"),
        _f("text", pa.string(), "The entity as spoken (redacted when its PII policy was on)"),
        _f("start_ms", pa.int64(), "Start time in the audio, milliseconds"),
        _f("end_ms", pa.int64(), "End time in the audio, milliseconds"),
        FLOW_RUN_ID,
        RUN_DATE,
    ],
    metadata={"description": "One row per entity; only for transcripts with entity_detection."},
)


def entities(transcript: Any) -> list[dict[str, Any]]:
    return [
        {
            "entity_type": e.get("entity_type"),
            "text": e.get("text"),
            "start_ms": e.get("start"),
            "end_ms": e.get("end"),
        }
        for e in objects(get(transcript, "entities"), "entities")
    ]


TABLE = Table(
    "entities",
    ENTITIES_SCHEMA,
    "media_id, entity_index",
    result_rows(ENTITIES_SCHEMA, "entity_index", entities),
)
