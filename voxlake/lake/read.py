"""Reading the tables back: one table's history (:func:`read_table`) or its current view
(:func:`read_current`), with the declared schemas."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from voxlake.lake.root import OutputRoot
from voxlake.lake.tables import RUN_DATE
from voxlake.lake.tables import table as registered
from voxlake.storage import S3Options

__all__ = ["read_current", "read_table"]


def read_table(
    root: str | os.PathLike[str] | OutputRoot,
    table: str,
    *,
    filesystem: Any | None = None,
    s3: S3Options | None = None,
    filter: pc.Expression | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Read one table back with its declared schema (run_date typed as a date from the folder).

    Hidden and ``_``-prefixed files (in-flight temp files) are ignored by pyarrow.dataset. A
    table that was never written reads as an empty table with the full schema. ``s3``: the
    endpoint, region and profile of an ``s3://`` root.
    """
    schema = registered(table).schema
    output = OutputRoot.of(root, s3=s3, filesystem=filesystem)
    if not output.exists(table):
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    # Imported here: pyarrow.dataset imports pandas (~1 s), which writing never needs.
    import pyarrow.dataset as ds

    partitioning = ds.partitioning(pa.schema([RUN_DATE]), flavor="hive")
    dataset = ds.dataset(
        output.join(table),
        format="parquet",
        partitioning=partitioning,
        schema=schema,
        filesystem=output.fs,
    )
    return dataset.to_table(filter=filter, columns=columns)


def read_current(
    root: str | os.PathLike[str] | OutputRoot,
    table: str = "transcripts",
    *,
    filesystem: Any | None = None,
    s3: S3Options | None = None,
) -> pa.Table:
    """The current view of one table (``transcripts_current``, ``words_current`` or
    ``utterances_current``; see ``voxlake/sql/views.sql``) with its declared schema.

    One row per ``media_id`` in ``transcripts`` (its latest completed row by ``recorded_at``, else
    its latest row); the words or utterances of those completed rows. Computed by the DuckDB
    views themselves, so Python and SQL users get exactly the same rows. Sorted by ``media_id``
    (then ``word_index`` / ``utterance_index``).
    """
    found = registered(table)
    from voxlake.lake.views import connect  # DuckDB: loaded only by readers that need it

    schema = found.schema
    columns = ", ".join(f'"{name}"' for name in schema.names)
    with connect(root, filesystem=filesystem, s3=s3) as con:
        result = con.sql(
            f"SELECT {columns} FROM {table}_current ORDER BY {found.current_order}"
        ).to_arrow_table()
    # DuckDB names the zone Etc/UTC and marks every column nullable: back to the declared types.
    return pa.Table.from_arrays(
        [c.cast(f.type) for c, f in zip(result.columns, schema, strict=True)], schema=schema
    )
