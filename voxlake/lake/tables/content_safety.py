"""The content safety tables of ``content_safety_labels``: ``content_safety``, one row per
segment and label with confidence and severity, and ``content_safety_summary``, one row per label
with AssemblyAI's ``summary`` (confidence over the transcript) and ``severity_score_summary``
(the share of low, medium and high severity).

Two tables for the two grains, as for topics (:mod:`voxlake.lake.tables.topics`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from voxlake.lake.tables.results import KEYS, RUN, SEGMENT, label_rows, result, result_rows
from voxlake.lake.tables.schema import Table
from voxlake.lake.tables.schema import field as _f

CONTENT_SAFETY_SCHEMA = pa.schema(
    [
        *KEYS,
        *SEGMENT,
        _f("label", pa.string(), "Content safety label (`disasters`, `profanity`, ...)"),
        _f("confidence", pa.float64(), "Confidence that the segment is about the label, 0..1"),
        _f("severity", pa.float64(), "How severe the segment is for the label, 0..1"),
        *RUN,
    ],
    metadata={
        "description": "One row per segment and content safety label; only for transcripts "
        "with content_safety."
    },
)

CONTENT_SAFETY_SUMMARY_SCHEMA = pa.schema(
    [
        *KEYS,
        _f("label_index", pa.int32(), "Position of the label, from 0", nullable=False),
        _f("label", pa.string(), "Content safety label"),
        _f("confidence", pa.float64(), "Confidence in the label over the whole transcript, 0..1"),
        _f("severity_low", pa.float64(), "Share of the label's severity that is low, 0..1"),
        _f("severity_medium", pa.float64(), "Share of the label's severity that is medium, 0..1"),
        _f("severity_high", pa.float64(), "Share of the label's severity that is high, 0..1"),
        *RUN,
    ],
    metadata={
        "description": "One row per content safety label of a transcript (the summaries); only "
        "for transcripts with content_safety."
    },
)


def segment_labels(transcript: Any) -> list[dict[str, Any]]:
    return label_rows(transcript, "content_safety_labels", "confidence", ("severity",))


def summary(transcript: Any) -> list[dict[str, Any]]:
    found = result(transcript, "content_safety_labels")
    confidence = found.get("summary") or {}
    severity = found.get("severity_score_summary") or {}
    # A label may be in either summary; dict order keeps AssemblyAI's order.
    labels = dict.fromkeys([*confidence, *severity])
    return [
        {
            "label": label,
            "confidence": confidence.get(label),
            "severity_low": (severity.get(label) or {}).get("low"),
            "severity_medium": (severity.get(label) or {}).get("medium"),
            "severity_high": (severity.get(label) or {}).get("high"),
        }
        for label in labels
    ]


TABLE = Table(
    "content_safety",
    CONTENT_SAFETY_SCHEMA,
    "media_id, row_index",
    result_rows(CONTENT_SAFETY_SCHEMA, "row_index", segment_labels),
)
SUMMARY_TABLE = Table(
    "content_safety_summary",
    CONTENT_SAFETY_SUMMARY_SCHEMA,
    "media_id, label_index",
    result_rows(CONTENT_SAFETY_SUMMARY_SCHEMA, "label_index", summary),
)
