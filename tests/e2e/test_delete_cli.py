"""Deleting transcripts at AssemblyAI: `voxlake run --delete-after-collect` and `voxlake purge`,
the real CLI against `voxlake serve-local`, counted on the server (docs/ledger.md).

The server answers a deleted transcript as AssemblyAI does (OpenAPI ``DeleteTranscriptResponse``,
the Go SDK's ``deleted.json``): 200 with the transcript's shell, ``audio_url`` replaced by
``http://deleted_by_user`` and the text by ``Deleted by user.``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pytest

from tests.e2e.test_ledger_cli import current, make_media
from tests.support.clikit import (
    LOCAL_KEY,
    REPO,
    ServeLocal,
    run_and_crash,
    run_env,
    voxlake_run,
)
from voxlake.lake.ledger import Ledger
from voxlake.lake.read import read_current

pytestmark = pytest.mark.slow

DELETED_URL = "http://deleted_by_user"


def deletes(server: ServeLocal) -> int:
    return int(server.stats()["requests_by_route"].get("transcript_delete", 0))


def deleted_on_server(server: ServeLocal) -> list[bool]:
    """Per job on the server: is it deleted (GET answers the deleted shell)?"""
    flags = []
    for job in server.jobs():
        got = httpx.get(
            f"{server.base_url}/v2/transcript/{job['id']}",
            headers={"Authorization": LOCAL_KEY},
            timeout=30,
        ).json()
        flags.append(got["audio_url"] == DELETED_URL and got["text"] == "Deleted by user.")
    return flags


def ledger_statuses(out: Path) -> dict[str, int]:
    events = Ledger.open(str(out), run_id="test", read_only=True).read_events(["status"])
    counts = pc.value_counts(events["status"]).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def purge(out: Path, server: ServeLocal, *args: str) -> subprocess.CompletedProcess[str]:
    env = run_env(server)
    return subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "purge", str(out), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_delete_after_collect_deletes_each_transcript_after_its_rows(
    tmp_path: Path, server: ServeLocal
) -> None:
    media, out = tmp_path / "media", tmp_path / "out"
    make_media(media, 6)

    done = voxlake_run(
        [str(media), "--output", str(out), "--delete-after-collect"], run_env(server), report=True
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert server.submissions() == 6
    assert deletes(server) == 6
    assert deleted_on_server(server) == [True] * 6
    # The rows are the transcripts', not the deleted shells'.
    assert current(out) == [(f"clip-{i:03d}.wav", "completed") for i in range(6)]
    texts = read_current(out).column("text").to_pylist()
    assert all(t and t != "Deleted by user." for t in texts), texts
    assert ledger_statuses(out) == {
        "submitting": 6,
        "submitted": 6,
        "completed": 6,
        "deleting": 6,
        "deleted": 6,
    }
    assert "6 transcripts deleted at AssemblyAI; 0 still held there" in done.stdout, done.stdout
    # The run's HTML report says it too.
    report = Path(done.stdout.split("Report: ", 1)[1].split()[0]).read_text()
    assert "<h2>Transcripts at AssemblyAI</h2>" in report
    for measure, n in (
        ("transcripts deleted", 6),
        ("deleted by this run", 6),
        ("transcripts still held at AssemblyAI", 0),
    ):
        assert f"<td>{measure}</td><td>{n}</td>" in report, measure


def test_kill_9_between_commit_and_delete_then_next_run_finishes_the_deletes(
    tmp_path: Path, server: ServeLocal
) -> None:
    media, out = tmp_path / "media", tmp_path / "out"
    make_media(media, 6)
    args = [str(media), "--output", str(out)]
    env = run_env(server)

    # Stopped after the commit (rows published, `completed` + `deleting` in the ledger), before
    # the first DELETE; then kill -9.
    run_and_crash([*args, "--delete-after-collect"], env, "delete:1")
    assert deletes(server) == 0
    assert current(out) == [(f"clip-{i:03d}.wav", "completed") for i in range(6)]
    assert ledger_statuses(out).get("deleting") == 6

    # The next run, even without the option: the ledger says the deletions were asked for.
    rerun = voxlake_run(args, env)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert server.submissions() == 6, "a file was paid twice"
    assert deletes(server) == 6
    assert deleted_on_server(server) == [True] * 6
    assert ledger_statuses(out)["deleted"] == 6
    assert "6 transcripts deleted at AssemblyAI; 0 still held there" in rerun.stdout, rerun.stdout


def test_failed_deletes_are_reported_and_held_then_purge_deletes_them(tmp_path: Path) -> None:
    media, out, state = tmp_path / "media", tmp_path / "out", tmp_path / "state"
    make_media(media, 3)
    args = [str(media), "--output", str(out), "--delete-after-collect"]
    failing = ServeLocal(tmp_path, "--state-dir", str(state), "--fault", "transcript_delete:p500=1")
    try:
        done = voxlake_run(args, run_env(failing))
        attempts = deletes(failing)
    finally:
        failing.stop()

    assert done.returncode == 0, done.stdout + done.stderr
    assert attempts >= 3 * 2, "each DELETE is retried by the client"
    assert (
        "0 transcripts deleted at AssemblyAI, 3 could not be deleted (retried next run); "
        f"3 still held there (voxlake purge {out} deletes them)"
    ) in done.stdout, done.stdout
    assert ledger_statuses(out).get("deleting") == 3 and "deleted" not in ledger_statuses(out)

    server = ServeLocal(tmp_path, "--state-dir", str(state))
    try:
        dry = purge(out, server)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "Would delete 3 transcripts held at AssemblyAI" in dry.stdout, dry.stdout
        assert sum(line.startswith("  clip-") for line in dry.stdout.splitlines()) == 3
        assert deletes(server) == 0

        done_purge = purge(out, server, "--yes")
        assert done_purge.returncode == 0, done_purge.stdout + done_purge.stderr
        assert "Deleted 3 transcripts at AssemblyAI" in done_purge.stdout, done_purge.stdout
        assert deleted_on_server(server) == [True] * 3
        assert ledger_statuses(out)["deleted"] == 3

        again = purge(out, server, "--yes")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Nothing to purge: 0 transcripts held at AssemblyAI (3 deleted already)" in (
            again.stdout
        )
        assert deletes(server) == 3  # the second purge sent nothing
        assert server.submissions() == 0  # this server's counters: nothing submitted anew
    finally:
        server.stop()
