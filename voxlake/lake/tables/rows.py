"""Helpers that turn transcripts (dicts of raw JSON or ``voxlake.models`` objects) into Arrow
columns fast: the hot loop for millions of words."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
import pyarrow as pa

from voxlake.lake.tables.schema import PARTITION_COLUMN


def get(obj: Any, name: str, default: Any = None) -> Any:
    """Field access for both plain dicts (raw JSON) and objects (voxlake.models.Transcript)."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def column(lists: Sequence[Sequence[Any]], name: str) -> list[Any]:
    # One comprehension per transcript and column (not per-row pyarrow calls): this is the hot
    # loop for millions of words, and a list comprehension with a bound .get is the fastest
    # pure-Python way to pull one field out of many dicts. Dict or object is decided per
    # transcript, so a batch may mix raw JSON and models.
    out: list[Any] = []
    for items in lists:
        if not items:
            continue
        if isinstance(items[0], Mapping):
            values = [w.get(name) for w in items]
        else:
            values = [getattr(w, name, None) for w in items]
        if out:
            out += values
        else:
            out = values  # no copy of the first (for a long transcript, the only) list
    return out


def string_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        # e.g. a channel given as an int by some producer: the table type is still string.
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def constant(value: Any, n: int, type_: pa.DataType) -> pa.Array:
    # repeat() builds the column in C instead of a Python list of n equal values.
    return pa.repeat(pa.scalar(value, type=type_), n)


def transcript_id(transcript: Any) -> str:
    tid = get(transcript, "id")
    if not tid:
        raise ValueError("transcript has no id")
    return str(tid)


def nested_rows(
    items: Sequence[tuple[str, Any]],
    field: str,
    index_name: str,
    *,
    flow_run_id: str,
    run_date: dt.date,
) -> tuple[list[Sequence[Any]], dict[str, pa.Array]]:
    """The rows nested under ``field`` (words, utterances) of each ``(media_id, transcript)``,
    and the columns every such table has: the item's keys, the row's position within its
    transcript, ``flow_run_id`` and ``run_date``."""
    lists = [get(t, field) or [] for _, t in items]
    if len(items) == 1:  # one (often long) transcript: constants in C, no index arithmetic
        ((media_id, transcript),) = items
        n = len(lists[0])
        return lists, {
            "media_id": constant(media_id, n, pa.string()),
            "transcript_id": constant(transcript_id(transcript), n, pa.string()),
            index_name: pa.array(np.arange(n, dtype=np.int32)),
            "flow_run_id": constant(flow_run_id, n, pa.string()),
            PARTITION_COLUMN: constant(run_date, n, pa.date32()),
        }
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    n = int(counts.sum())
    # Each transcript's keys are repeated over its rows with one take() per column for the
    # whole batch: per-transcript pa.repeat calls cost more than the words of a short one.
    owner = pa.array(np.repeat(np.arange(len(items)), counts))
    first_row = np.repeat(np.cumsum(counts) - counts, counts)
    columns = {
        "media_id": pa.array([m for m, _ in items], pa.string()).take(owner),
        "transcript_id": pa.array([transcript_id(t) for _, t in items], pa.string()).take(owner),
        index_name: pa.array((np.arange(n) - first_row).astype(np.int32)),
        "flow_run_id": constant(flow_run_id, n, pa.string()),
        PARTITION_COLUMN: constant(run_date, n, pa.date32()),
    }
    return lists, columns


def enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    # Naive datetimes are taken as UTC: AssemblyAI's own timestamps carry no zone and are UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)
