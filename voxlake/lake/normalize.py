"""Normalise: finished items (a transcript, or the error of one that has none) into rows.

:func:`normalize` is the one transcript-to-rows step of a run: every registered table's record
batch for a group of finished items, built in memory and nothing written, so a caller can
write them (:class:`voxlake.lake.writer.TableSink`) or look at them. Each table family module
(:mod:`voxlake.lake.tables`) knows its own columns; this module only composes them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from voxlake.lake.tables import NESTED, transcript_row, transcripts_batch

__all__ = ["MALFORMED", "SinkEntry", "normalize"]

SinkEntry = tuple[str, Any | None, Mapping[str, Any]]
"""``(media_id, transcript or None, transcript_row keyword fields)``: one finished item."""

#: What building one item's rows raises when its data does not fit the schema: transcript_row's
#: checks (ValueError), pyarrow conversions (ArrowInvalid is a ValueError, ArrowTypeError a
#: TypeError) and integers beyond int64 (OverflowError).
MALFORMED = (ValueError, TypeError, ArithmeticError)


def normalize(
    entries: Sequence[SinkEntry], *, flow_run_id: str, run_date: dt.date
) -> dict[str, pa.RecordBatch]:
    """One record batch per table for ``entries``: the nested tables (words, utterances, ...)
    of the completed transcripts first, ``transcripts`` last, in the order they must be
    committed. Raises one of :data:`MALFORMED` if an entry's rows cannot be built.

    An entry is ``(media_id, transcript, fields)``, ``fields`` being the keyword arguments of
    :func:`~voxlake.lake.tables.transcripts.transcript_row` other than ``flow_run_id`` and
    ``run_date``.
    """
    rows = [
        transcript_row(m, t, flow_run_id=flow_run_id, run_date=run_date, **fields)
        for m, t, fields in entries
    ]
    completed = [
        (m, t) for (m, t, _), row in zip(entries, rows, strict=True) if row["status"] == "completed"
    ]
    batches = {}
    for table in NESTED:
        assert table.rows is not None  # a nested table says how its rows are built
        batches[table.name] = table.rows(completed, flow_run_id=flow_run_id, run_date=run_date)
    batches["transcripts"] = transcripts_batch(rows)
    return batches
