"""Which items `voxlake recollect` fetches again: the record of table versions in the ledger."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from voxlake.lake.ledger import EVENT_SCHEMA
from voxlake.lake.tables import OPTIONAL, VERSIONS, stale_tables, tables_record
from voxlake.run.recollect import find_due

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
#: The tables every completed item has: all but the optional ones.
MANDATORY = [name for name in VERSIONS if name not in OPTIONAL]


def test_a_record_of_the_current_versions_is_not_stale() -> None:
    assert stale_tables(tables_record()) == []
    assert json.loads(tables_record()) == {name: VERSIONS[name] for name in MANDATORY}


def test_the_optional_tables_are_the_fetched_ones_and_recorded_only_when_filled() -> None:
    assert set(OPTIONAL) == {"sentences", "paragraphs"}
    assert set(json.loads(tables_record(["sentences"]))) == {*MANDATORY, "sentences"}
    with pytest.raises(ValueError, match="not optional tables: \\['words'\\]"):
        tables_record(["words"])


def test_an_optional_table_is_stale_only_when_asked_for() -> None:
    without = tables_record()
    assert stale_tables(without) == []
    assert stale_tables(without, ["sentences"]) == ["sentences"]
    assert stale_tables(tables_record(["sentences"]), ["sentences"]) == []
    # Recorded by the code before optional tables (every table, filled or not): version 1,
    # older than the current one, so asking for it fetches it.
    old = json.dumps({name: 1 for name in VERSIONS})
    assert stale_tables(old, ["paragraphs"]) == ["paragraphs"]


def test_a_table_added_later_or_a_raised_version_makes_an_item_stale() -> None:
    older = dict(VERSIONS)
    del older["utterances"]  # a record from before the table existed
    older["words"] = VERSIONS["words"] - 1  # before its version was raised
    assert stale_tables(json.dumps(older)) == ["words", "utterances"]


def test_an_item_recorded_before_versions_is_stale_for_every_table_but_optional_ones() -> None:
    assert stale_tables(None) == MANDATORY
    assert stale_tables(None, ["paragraphs"]) == [n for n in VERSIONS if n != "sentences"]


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
    assert due[0].stale == tuple(MANDATORY) and due[0].optional == ()
    assert due[0].submitted_at == T0 and due[0].completed_at == T0 + dt.timedelta(minutes=1)
    assert deleted == 1


def test_find_due_fetches_the_asked_optional_tables_and_those_an_item_had() -> None:
    had = json.loads(tables_record(["sentences"]))
    del had["words"]  # and a table added since
    log = events(
        [
            ("a", "completed", "t-a", tables_record()),  # lacks sentences: due when asked
            ("b", "completed", "t-b", tables_record(["sentences"])),  # has them: not due
            ("c", "completed", "t-c", json.dumps(had)),  # rewritten: keeps its sentences
        ]
    )

    plain, _ = find_due(log)
    asked, _ = find_due(log, ["sentences"])

    assert [(d.item.media_id, d.stale, d.optional) for d in plain] == [
        ("m-c", ("words",), ("sentences",))
    ]
    assert [(d.item.media_id, d.stale, d.optional) for d in asked] == [
        ("m-a", ("sentences",), ("sentences",)),
        ("m-c", ("words",), ("sentences",)),
    ]
