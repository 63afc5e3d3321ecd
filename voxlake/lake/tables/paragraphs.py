"""The ``paragraphs`` table: one row per paragraph, from ``GET /v2/transcript/{id}/paragraphs``.

Fetched after the transcript only when asked (``--paragraphs``; :mod:`voxlake.run.extras`) and
set on it as its ``paragraphs`` field; built like ``sentences``
(:func:`~voxlake.lake.tables.sentences.segments_batch`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from voxlake.lake.tables.schema import Table
from voxlake.lake.tables.sentences import segment_schema, segments_batch

PARAGRAPHS_SCHEMA = segment_schema(
    "paragraph",
    "One row per paragraph of each completed transcript; only for runs with `--paragraphs`.",
)


def paragraphs_batch(
    items: Sequence[tuple[str, Any]], *, flow_run_id: str, run_date: dt.date
) -> pa.RecordBatch:
    """The ``paragraphs`` rows of ``(media_id, transcript)`` pairs whose ``paragraphs`` field
    is set (:mod:`voxlake.run.extras`); none for the others."""
    return segments_batch(
        PARAGRAPHS_SCHEMA,
        "paragraphs",
        "paragraph_index",
        items,
        flow_run_id=flow_run_id,
        run_date=run_date,
    )


# Optional: only with --paragraphs. Version 2: the ledger records of version 1 were written for
# every item, filled or not, so they are not trusted (docs/ledger.md, "Re-collecting").
TABLE = Table(
    "paragraphs",
    PARAGRAPHS_SCHEMA,
    "media_id, paragraph_index",
    paragraphs_batch,
    version=2,
    optional=True,
)
