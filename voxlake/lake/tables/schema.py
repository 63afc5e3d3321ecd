"""What every table shares: field helpers, the ``run_date`` partition, a table's registration.

Schemas are written out, never inferred from data: a run where every ``speaker`` happens to be
null must still produce a ``string`` column, or readers that union runs break. Column docs live
in the field metadata (key ``description``) and ``docs/tables.md`` is generated from them
(:func:`schema_markdown`; a test keeps the two in sync).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pyarrow as pa

PARTITION_COLUMN = "run_date"
UTC_US = pa.timestamp("us", tz="UTC")


class Rows(Protocol):
    """``(media_id, transcript)`` pairs of completed transcripts -> one batch of a table."""

    def __call__(
        self, items: Sequence[tuple[str, Any]], *, flow_run_id: str, run_date: dt.date
    ) -> pa.RecordBatch: ...


def field(name: str, type_: pa.DataType, description: str, *, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"description": description})


#: Every table's run column, defined once.
FLOW_RUN_ID = field(
    "flow_run_id",
    pa.string(),
    "Run that wrote the row: its Prefect flow run id, or the UUID a run outside Prefect gives "
    "itself (`voxlake run` without a Prefect API, `voxlake recollect`)",
    nullable=False,
)
RUN_DATE = field(
    PARTITION_COLUMN,
    pa.date32(),
    "UTC date the flow run started; the hive partition (`run_date=YYYY-MM-DD` folder), not "
    "stored inside the files",
    nullable=False,
)


@dataclass(frozen=True)
class Table:
    """One table family: its name (the folder under the root), its schema, the order of its
    rows in the current view, for a table nested under a transcript (words, utterances, ...),
    how the rows of completed transcripts are built, and the version of those rows.

    ``version`` goes up by one whenever a change makes rows written before it stale (a new
    column, a fix in how a column is built): each completed item records the versions its rows
    were written with, and ``voxlake recollect`` rewrites the items whose record lacks a table
    or has an older version of it (docs/ledger.md, "Re-collecting").

    ``optional``: the table is filled only when asked for (``voxlake run --sentences``), from
    a request besides the transcript's own JSON (:mod:`voxlake.run.extras`) whose result is set
    on the transcript as its field of the table's name; a ``completed`` event records such a
    table only for the items whose transcript carried it.
    """

    name: str
    schema: pa.Schema
    current_order: str
    rows: Rows | None = None
    version: int = 1
    optional: bool = False


def file_schema(schema: pa.Schema) -> pa.Schema:
    """The schema stored in each file: the partition column lives in the folder name only."""
    return schema.remove(schema.get_field_index(PARTITION_COLUMN))


def schema_markdown(schema: pa.Schema) -> str:
    """A Markdown table (column, type, nullable, meaning) for docs/tables.md."""
    lines = ["| column | type | null? | meaning |", "|---|---|---|---|"]
    for f in schema:
        desc = (f.metadata or {}).get(b"description", b"").decode()
        lines.append(f"| `{f.name}` | `{f.type}` | {'yes' if f.nullable else 'no'} | {desc} |")
    return "\n".join(lines)


def batch(schema: pa.Schema, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    batch = pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)
    check_not_null(batch, schema)
    return batch


def check_not_null(data: pa.RecordBatch | pa.Table, schema: pa.Schema) -> None:
    # Arrow does not enforce nullable=False when building from arrays; Parquet readers would then
    # see nulls in a REQUIRED column. null_count is O(1) (cached per array).
    for f in schema:
        if not f.nullable and f.name in data.column_names and data.column(f.name).null_count:
            raise ValueError(f"column {f.name!r} must not contain nulls")
