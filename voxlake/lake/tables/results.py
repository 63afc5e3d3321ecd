"""What the speech-understanding tables share: rows pulled out of a transcript's result JSON
(sentiment, entities, chapters, key phrases, topics, content safety) into a typed batch.

Each such family module says which rows a transcript has (an ``extract`` function returning
plain dicts keyed by its schema's column names) and :func:`result_rows` does the rest: the
item keys every nested table carries (``media_id``, ``transcript_id``, ``flow_run_id``,
``run_date``), the row's position within its transcript, and each column typed as declared. A
transcript that did not ask for the feature has no rows (the result is absent or null).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from voxlake.lake.tables.rows import column, get, nested_rows, string_array, transcript_id
from voxlake.lake.tables.schema import FLOW_RUN_ID, RUN_DATE, Rows, batch
from voxlake.lake.tables.schema import field as _f

Extract = Callable[[Any], list[dict[str, Any]]]

#: The first and last columns of every result table: the keys views join on.
KEYS = [
    _f("media_id", pa.string(), "Stable key of the media item", nullable=False),
    _f("transcript_id", pa.string(), "AssemblyAI transcript id", nullable=False),
]
#: The columns of a per-segment label row (topics, content safety): which row, which segment.
SEGMENT = [
    _f("row_index", pa.int32(), "Position of the row in the transcript, from 0", nullable=False),
    _f("segment_index", pa.int32(), "Position of the segment, from 0"),
    _f("segment_text", pa.string(), "The segment's text"),
    _f("start_ms", pa.int64(), "Start of the segment in the audio, milliseconds"),
    _f("end_ms", pa.int64(), "End of the segment in the audio, milliseconds"),
]
RUN = [
    FLOW_RUN_ID,
    RUN_DATE,
]


def result_rows(schema: pa.Schema, index_name: str, extract: Extract) -> Rows:
    """The ``rows`` of a :class:`~voxlake.lake.tables.schema.Table` whose rows ``extract``
    pulls out of each transcript; ``index_name`` is the row's position, from 0."""

    def rows(
        items: Sequence[tuple[str, Any]], *, flow_run_id: str, run_date: dt.date
    ) -> pa.RecordBatch:
        pulled = [(m, {"id": transcript_id(t), "rows": extract(t)}) for m, t in items]
        lists, columns = nested_rows(
            pulled, "rows", index_name, flow_run_id=flow_run_id, run_date=run_date
        )
        values = pa.struct([f for f in schema if f.name not in columns])
        try:
            # All the row dicts in one conversion, in C++: a Python loop per column cost about
            # 1.5x the sink's time for these tables (benchmarks/b3u_understanding.py).
            fields = pa.array([r for rs in lists for r in rs], type=values).flatten()
            columns |= dict(zip(values.names, fields, strict=True))
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            # A value of another type (a channel given as an int): column by column, strings
            # made strings; anything else that does not fit still raises.
            for f in values:
                got = column(lists, f.name)
                columns[f.name] = (
                    string_array(got) if f.type == pa.string() else pa.array(got, type=f.type)
                )
        return batch(schema, columns)

    return rows


def result(transcript: Any, name: str) -> Mapping[str, Any]:
    """A feature's result object (``auto_highlights_result``, ...), ``{}`` when absent."""
    value = get(transcript, name)
    return value if isinstance(value, Mapping) else {}


def objects(value: Any, what: str) -> list[Mapping[str, Any]]:
    """The JSON objects of a result's list (``[]`` when absent). Anything else is a malformed
    transcript: a ValueError, so the item fails alone (``voxlake.lake.normalize.MALFORMED``)
    instead of the run."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
        return value
    raise ValueError(f"{what} is not a list of objects")


def span(value: Any) -> tuple[Any, Any]:
    """``(start, end)`` of a ``{"start": ms, "end": ms}`` timestamp object (None when absent)."""
    if isinstance(value, Mapping):
        return value.get("start"), value.get("end")
    return None, None


def label_rows(
    transcript: Any, name: str, score: str, extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One row per segment and label of a labelled-segments result (``iab_categories_result``,
    ``content_safety_labels``): the segment's position, text and span, the label, its
    ``score`` (relevance or confidence) and the label's ``extra`` fields (severity)."""
    out: list[dict[str, Any]] = []
    for i, segment in enumerate(objects(result(transcript, name).get("results"), name)):
        start, end = span(segment.get("timestamp"))
        for label in objects(segment.get("labels"), f"{name} labels"):
            row = {
                "segment_index": i,
                "segment_text": segment.get("text"),
                "start_ms": start,
                "end_ms": end,
                "label": label.get("label"),
                score: label.get(score),
            }
            row |= {k: label.get(k) for k in extra}
            out.append(row)
    return out
