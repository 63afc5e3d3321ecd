"""The ``transcript_insights`` table: one row per completed transcript with its
transcript-level understanding results: summary, language confidence, translations, the names
speaker identification gave the speakers, and whether (and how) PII was redacted.

Beside ``transcripts`` rather than in it: ``transcripts`` is the commit record of every item
(errors included) and keeps its columns; these are results, written before it like the other
result tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from voxlake.lake.tables.results import KEYS, RUN, result
from voxlake.lake.tables.rows import constant, enum_value, get, string_array, transcript_id
from voxlake.lake.tables.schema import PARTITION_COLUMN, Table, batch
from voxlake.lake.tables.schema import field as _f

TEXT_BY_KEY = pa.map_(pa.string(), pa.string())

TRANSCRIPT_INSIGHTS_SCHEMA = pa.schema(
    [
        *KEYS,
        _f("summary", pa.string(), "The transcript's summary (summarization)"),
        _f("summary_type", pa.string(), "`bullets`, `paragraph`, `headline`, ... as requested"),
        _f(
            "language_confidence",
            pa.float64(),
            "Confidence in the detected language, 0..1 (language_detection)",
        ),
        _f(
            "translated_texts",
            TEXT_BY_KEY,
            "The transcript translated, by language code (speech_understanding translation)",
        ),
        _f(
            "speaker_names",
            TEXT_BY_KEY,
            "Speaker label (`A`, ...) to the name or role speaker identification gave it",
        ),
        _f("pii_redacted", pa.bool_(), "Whether PII was redacted from the text (redact_pii)"),
        _f("pii_policies", pa.list_(pa.string()), "The PII policies redacted"),
        _f(
            "pii_substitution", pa.string(), "How redacted PII was replaced (`hash`, `entity_name`)"
        ),
        *RUN,
    ],
    metadata={"description": "One row per completed transcript: its transcript-level results."},
)


def _pairs(value: Any) -> list[tuple[str, str | None]] | None:
    if not isinstance(value, Mapping) or not value:
        return None
    return [(str(k), v if v is None else str(v)) for k, v in value.items()]


def _speaker_names(transcript: Any) -> list[tuple[str, str | None]] | None:
    response = result(transcript, "speech_understanding").get("response") or {}
    identification = response.get("speaker_identification") or {}
    return _pairs(identification.get("mapping"))


def insights_batch(
    items: Sequence[tuple[str, Any]], *, flow_run_id: str, run_date: dt.date
) -> pa.RecordBatch:
    """One ``transcript_insights`` row per ``(media_id, transcript)``."""
    n = len(items)
    ts = [t for _, t in items]
    redacted = [get(t, "redact_pii") for t in ts]
    columns = {
        "media_id": pa.array([m for m, _ in items], pa.string()),
        "transcript_id": pa.array([transcript_id(t) for t in ts], pa.string()),
        "summary": string_array([get(t, "summary") for t in ts]),
        "summary_type": string_array([enum_value(get(t, "summary_type")) for t in ts]),
        "language_confidence": pa.array([get(t, "language_confidence") for t in ts], pa.float64()),
        "translated_texts": pa.array([_pairs(get(t, "translated_texts")) for t in ts], TEXT_BY_KEY),
        "speaker_names": pa.array([_speaker_names(t) for t in ts], TEXT_BY_KEY),
        "pii_redacted": pa.array([None if r is None else bool(r) for r in redacted], pa.bool_()),
        "pii_policies": pa.array(
            [
                [str(enum_value(p)) for p in get(t, "redact_pii_policies") or ()] if r else None
                for t, r in zip(ts, redacted, strict=True)
            ],
            pa.list_(pa.string()),
        ),
        "pii_substitution": string_array(
            [
                enum_value(get(t, "redact_pii_sub")) if r else None
                for t, r in zip(ts, redacted, strict=True)
            ]
        ),
        "flow_run_id": constant(flow_run_id, n, pa.string()),
        PARTITION_COLUMN: constant(run_date, n, pa.date32()),
    }
    return batch(TRANSCRIPT_INSIGHTS_SCHEMA, columns)


TABLE = Table("transcript_insights", TRANSCRIPT_INSIGHTS_SCHEMA, "media_id", insights_batch)
