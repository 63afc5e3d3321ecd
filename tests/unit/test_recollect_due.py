"""Which items `voxlake recollect` fetches again: the record of table versions in the ledger."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa

from voxlake.lake.ledger import EVENT_SCHEMA
from voxlake.lake.tables import VERSIONS, stale_tables, tables_record
from voxlake.run.recollect import find_due

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_a_record_of_the_current_versions_is_not_stale() -> None:
    assert stale_tables(tables_record()) == []
    assert json.loads(tables_record()) == VERSIONS


def test_a_table_added_later_or_a_raised_version_makes_an_item_stale() -> None:
    older = dict(VERSIONS)
    del older["utterances"]  # a record from before the table existed
    older["words"] = VERSIONS["words"] - 1  # before its version was raised
    assert stale_tables(json.dumps(older)) == ["words", "utterances"]


def test_an_item_recorded_before_versions_is_stale_for_every_table() -> None:
    assert stale_tables(None) == list(VERSIONS)


def events(rows: list[tuple[str, str, str | None, str | None]]) -> pa.Table:
    """(item_key, status, transcript_id, tables), one minute apart, as the ledger reads them."""
    columns: dict[str, list[object]] = {f.name: [] for f in EVENT_SCHEMA}
    for i, (key, status, tid, tables) in enumerate(rows):
        values = {
            "item_key": key,
            "media_id": f"m-{key}",
            "source": f"/media/{key}.wav",
            "source_fingerprint": "10:1",
            "source_size": 10,
            "options_hash": "h",
            "status": status,
            "transcript_id": tid,
            "run_id": "r",
            "at": T0 + dt.timedelta(minutes=i),
            "tables": tables,
        }
        for name in columns:
            columns[name].append(values.get(name))
    return pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)


def test_find_due_takes_completed_items_with_stale_records_only() -> None:
    current = tables_record()
    log = events(
        [
            ("a", "submitted", "t-a", None),
            ("a", "completed", "t-a", None),  # before versions: due
            ("b", "completed", "t-b", current),  # current: not due
            ("c", "completed", "t-c", None),
            ("c", "deleted", "t-c", None),  # gone: never again
            ("d", "completed", "t-d", None),
            ("d", "submitting", None, None),  # forced again, in flight: the run's, not ours
            ("e", "completed", "t-e", None),
            ("e", "completed", "t-e", current),  # recollected already
        ]
    )

    due, deleted = find_due(log)

    assert [(d.item.media_id, d.transcript_id) for d in due] == [("m-a", "t-a")]
    assert due[0].stale == tuple(VERSIONS)
    assert due[0].submitted_at == T0 and due[0].completed_at == T0 + dt.timedelta(minutes=1)
    assert deleted == 1
