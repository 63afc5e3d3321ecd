"""The ledger's deletion statuses (deleting, deleted): planning reads through them, the fold
knows them, and Ledger.held() says which transcripts are still at AssemblyAI."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.integration.test_ledger import item
from voxlake.lake import views
from voxlake.lake.ledger import Event, Ledger, Status, key_of, plan


def test_deleted_items_plan_as_their_outcome_and_held_lists_the_rest(tmp_path: Path) -> None:
    done, failed, asked, kept, forced, flying = (item(n) for n in "abcdef")
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def at(s: int) -> dt.datetime:
        return t0 + dt.timedelta(seconds=s)

    with Ledger.open(str(tmp_path), run_id="run-1") as ledger:
        ledger.append(
            [
                Event(done, Status.completed, transcript_id="t-done", at=at(1)),
                Event(done, Status.deleting, transcript_id="t-done", at=at(2)),
                Event(failed, Status.job_failed, transcript_id="t-failed", at=at(1)),
                Event(failed, Status.deleting, transcript_id="t-failed", at=at(2)),
                Event(asked, Status.completed, transcript_id="t-asked", at=at(1)),
                Event(asked, Status.deleting, transcript_id="t-asked", at=at(2)),
                Event(kept, Status.completed, transcript_id="t-kept", at=at(1)),
                # Submitted again with --force: its first transcript is still held too.
                Event(forced, Status.completed, transcript_id="t-forced-1", at=at(1)),
                Event(forced, Status.submitting, audio_url="https://cdn/f2", at=at(3)),
                Event(forced, Status.submitted, transcript_id="t-forced-2", at=at(4)),
                Event(forced, Status.completed, transcript_id="t-forced-2", at=at(5)),
                Event(flying, Status.submitted, transcript_id="t-flying", at=at(1)),
            ]
        )
        ledger.append(
            [
                Event(done, Status.deleted, transcript_id="t-done", at=at(3)),
                Event(failed, Status.deleted, transcript_id="t-failed", at=at(3)),
            ]
        )
    reader = Ledger.open(str(tmp_path), run_id="run-2", read_only=True)
    states = reader.states

    actions = {p.item.media_id: p.action for p in plan([done, failed, asked, kept], states)}
    # A deleted transcript's item is still done (or failed): nothing is submitted again.
    assert actions == {"a": "skip_done", "b": "skip_failed", "c": "skip_done", "d": "skip_done"}
    assert plan([failed], states, retry_failed=True)[0].action == "new"
    assert states[key_of(done)].status is Status.deleted
    assert states.keys_with(Status.deleting) == [key_of(asked)]
    assert states[key_of(asked)].transcript_id == "t-asked"

    held = reader.held()
    assert [(h.item.media_id, h.transcript_id, h.requested) for h in held.transcripts] == [
        ("c", "t-asked", True),
        ("d", "t-kept", False),
        ("e", "t-forced-1", False),
        ("e", "t-forced-2", False),
    ]
    assert held.deleted == 2 and held.in_flight == 1
    assert [h.transcript_id for h in held.requested] == ["t-asked"]
    # The recorded identity makes events of the same key (purge has no manifest).
    assert held.transcripts[0].item.key == key_of(asked)
    # The view the report and `voxlake query` read counts the same way.
    with views.connect(tmp_path) as con:
        counts = con.sql(
            "select count(*) filter (deleted_at is null), count(deleted_at) from ledger_transcripts"
        ).fetchall()
    assert counts == [(len(held.transcripts), held.deleted)]


def test_a_ledger_without_deletions_reads_as_before(tmp_path: Path) -> None:
    a = item("a")
    with Ledger.open(str(tmp_path), run_id="run-1") as ledger:
        ledger.append([Event(a, Status.completed, transcript_id="t-a")])
    reader = Ledger.open(str(tmp_path), run_id="run-2", read_only=True)

    assert reader.states.keys_with(Status.deleting) == []
    assert plan([a], reader.states)[0].action == "skip_done"
    held = reader.held()
    assert [h.transcript_id for h in held.transcripts] == ["t-a"] and held.deleted == 0
