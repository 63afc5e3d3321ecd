"""The topic tables of ``iab_categories_result``: ``topics``, one row per segment and label with
its relevance, and ``topics_summary``, one row per label with its relevance to the whole
transcript (AssemblyAI's ``summary``).

Two tables rather than one: the per-segment rows and the per-transcript summary have different
grains, and a summary column repeated on every segment row would be wrong to sum.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from voxlake.lake.tables.results import KEYS, RUN, SEGMENT, label_rows, result, result_rows
from voxlake.lake.tables.schema import Table
from voxlake.lake.tables.schema import field as _f

TOPICS_SCHEMA = pa.schema(
    [
        *KEYS,
        *SEGMENT,
        _f("label", pa.string(), "IAB category (`NewsAndPolitics>Weather`, ...)"),
        _f("relevance", pa.float64(), "Relevance of the label to the segment, 0..1"),
        *RUN,
    ],
    metadata={
        "description": "One row per segment and IAB label; only for transcripts with "
        "iab_categories."
    },
)

TOPICS_SUMMARY_SCHEMA = pa.schema(
    [
        *KEYS,
        _f("label_index", pa.int32(), "Position of the label, from 0", nullable=False),
        _f("label", pa.string(), "IAB category"),
        _f("relevance", pa.float64(), "Relevance of the label to the whole transcript, 0..1"),
        *RUN,
    ],
    metadata={
        "description": "One row per IAB label of a transcript (the summary); only for "
        "transcripts with iab_categories."
    },
)


def segment_labels(transcript: Any) -> list[dict[str, Any]]:
    return label_rows(transcript, "iab_categories_result", "relevance")


def summary(transcript: Any) -> list[dict[str, Any]]:
    found = result(transcript, "iab_categories_result").get("summary") or {}
    return [{"label": label, "relevance": value} for label, value in found.items()]


TABLE = Table(
    "topics",
    TOPICS_SCHEMA,
    "media_id, row_index",
    result_rows(TOPICS_SCHEMA, "row_index", segment_labels),
)
SUMMARY_TABLE = Table(
    "topics_summary",
    TOPICS_SUMMARY_SCHEMA,
    "media_id, label_index",
    result_rows(TOPICS_SUMMARY_SCHEMA, "label_index", summary),
)
