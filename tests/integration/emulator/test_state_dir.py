"""A server with a state directory carries on after a restart (docs/local-server.md).

Real servers over HTTP, stopped and started again on the same directory: completed jobs are
served with their words, jobs that were queued or processing run again, and a second server on
the same directory refuses to start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.emulator.helpers import SCRIPT, client, submit, upload
from voxlake.emulator import LocalServer, StateDirInUseError
from voxlake.emulator.synth import synth_wav


def test_a_restarted_server_serves_finished_jobs_and_finishes_the_others(
    tmp_path: Path, make_server: Callable[..., LocalServer]
) -> None:
    state = tmp_path / "state"
    # Half a second per second of audio, one job at a time.
    first = make_server(state_dir=state, concurrency_limit=1, processing_per_audio_s=0.5)
    with client(first) as c:
        done = submit(c, upload(c, synth_wav(SCRIPT, 1.0)))
        first.wait_for_transcript(done["id"])
        before = c.get(f"/v2/transcript/{done['id']}").json()
        slow = [submit(c, upload(c, synth_wav(SCRIPT, 20.0))) for _ in range(2)]
        first.wait_until(lambda s: s["processing"] == 1)
        statuses = [c.get(f"/v2/transcript/{t['id']}").json()["status"] for t in slow]
    first.stop()
    assert statuses == ["processing", "queued"]  # 10 s each: neither done when it stopped

    second = make_server(state_dir=state, concurrency_limit=1)
    with client(second) as c:
        again = c.get(f"/v2/transcript/{done['id']}").json()
        assert again == before  # words, timestamps, everything
        assert c.get(f"/v2/transcript/{done['id']}/sentences").status_code == 200
        for job in slow:
            assert second.wait_for_transcript(job["id"]) == "completed"
            assert c.get(f"/v2/transcript/{job['id']}").json()["words"]
        listed = c.get("/v2/transcript", params={"limit": 10}).json()["transcripts"]
    # Newest first, in the order the first server created them.
    assert [t["id"] for t in listed] == [slow[1]["id"], slow[0]["id"], done["id"]]
    assert second.stats()["submissions_by_key"] == {}  # nothing was submitted again


def test_one_server_per_state_directory(
    tmp_path: Path, make_server: Callable[..., LocalServer]
) -> None:
    make_server(state_dir=tmp_path)
    with pytest.raises(StateDirInUseError, match="in use by another process"):
        make_server(state_dir=tmp_path)
