"""voxlake.lake.ledger: planning, durable events, compaction and the lease, locally and on S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from voxlake.lake.ledger import (
    EVENTS_DIR,
    LEASE_FILE,
    Event,
    LeaseHeldError,
    Ledger,
    Status,
    key_of,
    plan,
)
from voxlake.manifest import MediaItem, SourceInfo, SourceKind, TranscriptionOptions


def item(name: str, fingerprint: str = "10:1", speaker_labels: bool | None = None) -> MediaItem:
    options = TranscriptionOptions(speaker_labels=speaker_labels)
    info = SourceInfo(10, fingerprint)
    return MediaItem(name, f"/media/{name}", SourceKind.local, options, 1, info)


def test_plan_decides_from_the_latest_event_of_each_key(tmp_path: Path) -> None:
    a, b, c, d, e, f = (item(n) for n in "abcdef")
    with Ledger.open(str(tmp_path), run_id="run-1") as ledger:
        ledger.append(
            [
                Event(a, Status.submitting, audio_url="https://cdn/upload/a"),
                Event(b, Status.submitting, audio_url="https://cdn/upload/b"),
                Event(c, Status.submitting, audio_url="https://cdn/upload/c"),
                Event(d, Status.failed, stage="upload", error="network"),
                Event(e, Status.deferred, error="budget"),
            ]
        )
        ledger.append(
            [
                Event(b, Status.submitted, transcript_id="tb"),
                Event(c, Status.submitted, transcript_id="tc"),
            ]
        )
        ledger.append(
            [
                Event(c, Status.completed, transcript_id="tc"),
                Event(f, Status.job_failed, transcript_id="tf", stage="poll"),
            ]
        )
    states = Ledger.open(str(tmp_path), run_id="run-2", read_only=True).states
    items = [a, b, c, d, e, f, item("g")]

    actions = {p.item.media_id: (p.action, p.retry) for p in plan(items, states)}
    assert actions == {
        "a": ("resume", False),  # outcome unknown: looked up by its upload URL
        "b": ("resume", False),  # paid, not collected
        "c": ("skip_done", False),
        "d": ("new", True),  # no job was created: retried for free
        "e": ("new", False),  # deferred by a budget: never attempted
        "f": ("skip_failed", False),
        "g": ("new", False),
    }
    assert states[key_of(a)].audio_url == "https://cdn/upload/a"
    assert states[key_of(b)].transcript_id == "tb"

    retried = {p.item.media_id: p.action for p in plan(items, states, retry_failed=True)}
    assert retried["f"] == "new" and retried["c"] == "skip_done"
    forced = {p.item.media_id: p.action for p in plan(items, states, force=True)}
    # Forced: everything again, except jobs already paid for and still in flight.
    assert forced == dict.fromkeys("cdefg", "new") | {"a": "resume", "b": "resume"}
    # Changed bytes or options are new items.
    changed = [item("c", fingerprint="10:2"), item("c", speaker_labels=True)]
    assert [p.action for p in plan(changed, states)] == ["new", "new"]


def test_the_ledger_is_readable_with_duckdb_and_keeps_no_query_strings(tmp_path: Path) -> None:
    signed = "https://bucket.s3.amazonaws.com/a.wav?X-Amz-Signature=abc&X-Amz-Credential=k"
    with Ledger.open(str(tmp_path), run_id="run-1") as ledger:
        ledger.append([Event(item("a"), Status.submitting, audio_url=signed)])

    rows = (
        duckdb.connect()
        .execute(
            f"select media_id, status, audio_url, run_id "
            f"from read_parquet('{tmp_path}/{EVENTS_DIR}/*.parquet')"
        )
        .fetchall()
    )
    assert rows == [("a", "submitting", "https://bucket.s3.amazonaws.com/a.wav", "run-1")]
    raw = b"".join(p.read_bytes() for p in (tmp_path / EVENTS_DIR).iterdir())
    assert b"Signature" not in raw


def test_loading_folds_the_log_as_applying_each_event_in_order_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The columnar fold against the plain rule, event by event, over random histories with
    ties in time, re-submissions, missing ids, several files and batches within a file."""
    import datetime as dt
    import random

    import voxlake.lake.ledger.states

    monkeypatch.setattr(voxlake.lake.ledger.states, "_BATCH_ROWS", 5)

    rng = random.Random(7)
    items = [item(f"i{n}") for n in range(40)]
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with Ledger.open(str(tmp_path), run_id="run-1") as writer:
        for _ in range(30):
            batch = []
            for _ in range(rng.randint(1, 12)):
                status = rng.choice(list(Status))
                batch.append(
                    Event(
                        rng.choice(items),
                        status,
                        audio_url=rng.choice([None, f"https://cdn/{rng.randint(0, 99)}"]),
                        transcript_id=rng.choice([None, f"t{rng.randint(0, 99)}"]),
                        at=t0 + dt.timedelta(seconds=rng.randint(0, 20)),  # many ties
                    )
                )
            writer.append(batch)
    ledger = Ledger.open(str(tmp_path), run_id="reader", read_only=True)

    expected: dict[str, tuple[Any, ...]] = {}
    for row in ledger.read_events().to_pylist():
        status = Status(row["status"])
        prev = expected.get(row["item_key"], (None, None, None, None, None, False))
        _, tid, url, _, submitting_at, done = prev
        if status is Status.submitting:
            submitting_at, tid = row["at"], None
        url = row["audio_url"] if row["audio_url"] is not None else url
        tid = row["transcript_id"] if row["transcript_id"] is not None else tid
        done = done or status is Status.completed
        expected[row["item_key"]] = (status, tid, url, row["at"], submitting_at, done)

    def seen(keys: Iterable[str]) -> dict[str, tuple[Any, ...]]:
        states = ledger.states
        return {
            k: (s.status, s.transcript_id, s.audio_url, s.at, s.submitting_at, s.ever_completed)
            for k in keys
            if (s := states[k])
        }

    # The open items' details are read with the statuses; the settled ones' on first use.
    still_open = [k for k, e in expected.items() if e[0] is not Status.completed]
    assert seen(still_open) == {k: expected[k] for k in still_open}
    assert seen(ledger.states) == expected
    assert len(ledger.states) == len(expected) > 30
    codes, done = ledger.states.codes([*expected, "no-such-key"])
    assert codes[-1] == -1 and not done[-1]
    assert list(done[:-1]) == [e[5] for e in expected.values()]


def test_compaction_merges_event_files_and_keeps_every_state(tmp_path: Path) -> None:
    items = [item(f"m{i}") for i in range(6)]
    with Ledger.open(str(tmp_path), run_id="run-1") as ledger:
        for it in items:
            ledger.append([Event(it, Status.submitting, audio_url=f"https://cdn/{it.media_id}")])
            ledger.append([Event(it, Status.submitted, transcript_id=f"t-{it.media_id}")])
    before = Ledger.open(str(tmp_path), run_id="x", read_only=True).states
    assert len(list((tmp_path / EVENTS_DIR).iterdir())) == 12

    with Ledger.open(str(tmp_path), run_id="run-2", compact_above=4) as ledger:
        after = ledger.states

    assert [p.name.startswith("compacted-") for p in (tmp_path / EVENTS_DIR).iterdir()] == [True]
    assert {k: (s.status, s.transcript_id) for k, s in after.items()} == {
        k: (s.status, s.transcript_id) for k, s in before.items()
    }


def test_a_second_run_is_refused_while_the_first_holds_the_lease(tmp_path: Path) -> None:
    first = Ledger.open(str(tmp_path), run_id="nightly-1")
    try:
        with pytest.raises(LeaseHeldError, match=r"in use by run nightly-1.*submitted nothing"):
            Ledger.open(str(tmp_path), run_id="backfill-7")
        # Shards of one backfill share it; only the run that took it releases it.
        shard = Ledger.open(str(tmp_path), run_id="shard-1", lease_group="nightly-1")
        shard.close()
        assert (tmp_path / LEASE_FILE).exists()
    finally:
        first.close()
    assert not (tmp_path / LEASE_FILE).exists()
    Ledger.open(str(tmp_path), run_id="backfill-7").close()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    crashed = Ledger.open(str(tmp_path), run_id="crashed")
    assert crashed.lease is not None
    crashed.lease._stop.set()  # its heartbeat ends, as a killed process's would
    lease = json.loads((tmp_path / LEASE_FILE).read_text())
    # Make it look like the holder was another process, now gone (a kill -9).
    (tmp_path / LEASE_FILE).write_text(json.dumps(lease | {"pid": int(dead.stdout)}))
    stale = tmp_path / "transcripts" / "run_date=2026-12-01" / ".part-x.parquet.1234abcd.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")

    with Ledger.open(str(tmp_path), run_id="rerun") as ledger:
        assert ledger.lease is not None and ledger.lease.acquired
        assert json.loads((tmp_path / LEASE_FILE).read_text())["run_id"] == "rerun"
    assert not stale.exists()


def test_an_expired_lease_of_another_host_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / "_ledger").mkdir()
    (tmp_path / LEASE_FILE).write_text(
        json.dumps(
            {
                "group": "g",
                "run_id": "elsewhere",
                "host": "another-host",
                "pid": os.getpid(),
                "acquired_at": "2026-01-01T00:00:00+00:00",
                "expires_at": "2026-01-01T00:05:00+00:00",
            }
        )
    )
    with Ledger.open(str(tmp_path), run_id="now") as ledger:
        assert ledger.lease is not None and ledger.lease.acquired


def test_an_output_that_is_a_file_or_unwritable_is_refused_clearly(tmp_path: Path) -> None:
    from voxlake.errors import ConfigurationError

    taken = tmp_path / "file"
    taken.write_text("x")
    with pytest.raises(ConfigurationError, match="is a file, not a folder"):
        Ledger.open(str(taken), run_id="r")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        with pytest.raises(ConfigurationError, match="not writable"):
            Ledger.open(str(locked / "out"), run_id="r")


def test_the_ledger_and_its_lease_on_s3(make_bucket: Callable[[str], str], s3fs_fs: Any) -> None:
    root = f"s3://{make_bucket('lake')}/voxlake"
    a = item("a")
    with Ledger.open(root, run_id="run-1") as ledger:
        assert s3fs_fs.exists(f"{root[5:]}/{LEASE_FILE}")
        with pytest.raises(LeaseHeldError):
            Ledger.open(root, run_id="run-2")
        ledger.append([Event(a, Status.submitting, audio_url="https://cdn/upload/a")])
        ledger.append([Event(a, Status.submitted, transcript_id="ta")])
    assert not s3fs_fs.exists(f"{root[5:]}/{LEASE_FILE}")

    states = Ledger.open(root, run_id="run-3", read_only=True).states
    assert states[key_of(a)].status is Status.submitted
    assert states[key_of(a)].transcript_id == "ta"


def test_no_bucket_fails_before_anything(moto_s3: Any) -> None:
    from voxlake.storage import StorageError

    with pytest.raises(StorageError, match="bucket"):
        Ledger.open("s3://no-such-bucket-4242/out", run_id="r")


def test_a_stale_conditional_write_on_s3_is_refused_not_raised(
    make_bucket: Callable[[str], str], s3fs_fs: Any
) -> None:
    """The lease's writes on S3 answer False when another run wrote first, as locally: s3fs
    raises a 412 on If-Match as an OSError caused by botocore's PreconditionFailed."""
    from voxlake.lake.ledger.store import open_store

    store = open_store(f"s3://{make_bucket('lease')}/voxlake", create=True)
    assert store.read_versioned(LEASE_FILE) is None
    assert store.create(LEASE_FILE, b"one")
    assert not store.create(LEASE_FILE, b"two")
    found = store.read_versioned(LEASE_FILE)
    assert found is not None and found[0] == b"one"
    assert store.replace_if(LEASE_FILE, b"three", found[1])
    assert not store.replace_if(LEASE_FILE, b"four", found[1])  # replaced since it was read
    again = store.read_versioned(LEASE_FILE)
    assert again is not None and again[0] == b"three"
