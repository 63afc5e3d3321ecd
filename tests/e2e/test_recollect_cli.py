"""Re-collecting without paying: `voxlake recollect` against `voxlake serve-local`.

A real run writes the lake; the test then makes it look as main's code before table versions
left it (ledger events without the ``tables`` record, and no ``words`` folder: a table that
did not exist then) and recollects. The server's counters prove the cost: GETs only, no upload,
no submission.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.clikit import (
    LOCAL_KEY,
    REPO,
    ServeLocal,
    clean_env,
    process_state,
    run_env,
    temp_files,
    voxlake_run,
    wait_until,
)
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.read import read_current
from voxlake.lake.views import connect

pytestmark = pytest.mark.slow

N = 4


def voxlake_recollect(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "voxlake.cli", "recollect", *args]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def collected_lake(tmp_path: Path, server: ServeLocal) -> Path:
    """A run's output root, then as code before table versions left it: no ``tables`` record
    in the ledger, and no ``words`` rows (a table added since)."""
    media, out = tmp_path / "media", tmp_path / "out"
    media.mkdir()
    for i in range(N):
        write_synth_wav(media / f"clip-{i}.wav", "the birch canoe", 0.6 + i * 0.1,
                        sample_rate=8000, seed=i)  # fmt: skip
    first = voxlake_run([str(media), "--output", str(out)], run_env(server))
    assert first.returncode == 0, first.stdout + first.stderr
    for path in (out / "_ledger" / "events").glob("*.parquet"):
        events = pq.read_table(path)
        if "tables" in events.column_names:
            pq.write_table(events.drop_columns(["tables"]), path)
    shutil.rmtree(out / "words")
    return out


def transcript_ids(out: Path) -> dict[str, str]:
    rows = read_current(out).select(["media_id", "transcript_id"]).to_pylist()
    return {r["media_id"]: r["transcript_id"] for r in rows}


def routes(server: ServeLocal) -> dict[str, int]:
    return dict(server.stats()["requests_by_route"])


def test_recollect_writes_missing_tables_with_gets_only_and_reports_deleted(
    tmp_path: Path, server: ServeLocal
) -> None:
    out = collected_lake(tmp_path, server)
    env = run_env(server)
    ids = transcript_ids(out)
    gone = ids["clip-1.wav"]
    deleted = httpx.delete(
        f"{server.base_url}/v2/transcript/{gone}", headers={"Authorization": LOCAL_KEY}
    )
    assert deleted.status_code == 200
    before = routes(server)

    dry = voxlake_recollect([str(out), "--dry-run"], env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"{N} transcripts would be fetched again" in dry.stdout, dry.stdout
    assert routes(server) == before  # a dry run sends nothing

    done = voxlake_recollect([str(out)], env)

    assert done.returncode == 0, done.stdout + done.stderr
    after = routes(server)
    new = {route: after.get(route, 0) - before.get(route, 0) for route in after}
    assert {route: n for route, n in new.items() if n} == {"transcript_get": N}, new
    assert f"Recollected {N - 1} of {N} transcripts" in done.stdout, done.stdout
    assert "1 transcripts can no longer be fetched" in done.stdout and gone in done.stdout
    words = read_current(out, "words").select(["media_id", "transcript_id", "word_index"])
    rows = words.to_pylist()
    assert {r["media_id"] for r in rows} == {f"clip-{i}.wav" for i in range(N)} - {"clip-1.wav"}
    assert len({(r["transcript_id"], r["word_index"]) for r in rows}) == len(rows)
    current = read_current(out).select(["media_id", "status", "transcript_id"]).to_pylist()
    assert sorted((r["media_id"], r["status"]) for r in current) == [
        (f"clip-{i}.wav", "completed") for i in range(N)
    ]
    assert {r["media_id"]: r["transcript_id"] for r in current} == ids
    with connect(out) as con:
        ledger = dict(con.sql("SELECT media_id, status FROM ledger").fetchall())
    assert ledger == {f"clip-{i}.wav": "deleted" if i == 1 else "completed" for i in range(N)}

    again = voxlake_recollect([str(out)], env)

    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to recollect" in again.stdout, again.stdout
    assert "1 items were recorded as deleted before" in again.stdout, again.stdout
    assert routes(server) == after  # not even the deleted one is asked for again
    assert server.submissions() == N  # the first run's, and no other


def test_recollect_killed_between_rows_and_ledger_finishes_once(
    tmp_path: Path, server: ServeLocal
) -> None:
    out = collected_lake(tmp_path, server)
    env = run_env(server)
    ids = transcript_ids(out)
    cmd = [sys.executable, "-m", "voxlake.cli", "recollect", str(out)]
    crashing = env | {"VOXLAKE_TEST_HOOKS": "1", "VOXLAKE_CRASHPOINT": "write:1"}
    proc = subprocess.Popen(
        cmd, env=crashing, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: proc.poll() is not None or process_state(proc.pid) == "T",
            "recollect to stop at its write crash point",
        )
        assert proc.returncode is None, "recollect ended before its crash point"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert read_current(out, "words").num_rows > 0  # the rows were published, the ledger not told
    gets = routes(server)["transcript_get"]

    rerun = voxlake_recollect([str(out)], env)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"Recollected {N} of {N} transcripts" in rerun.stdout, rerun.stdout
    assert routes(server)["transcript_get"] == gets + N
    assert server.submissions() == N  # the first run's, and no other
    words = read_current(out, "words").select(["media_id", "transcript_id", "word_index"])
    rows = words.to_pylist()
    assert {r["media_id"] for r in rows} == {f"clip-{i}.wav" for i in range(N)}
    assert len({(r["transcript_id"], r["word_index"]) for r in rows}) == len(rows)
    assert transcript_ids(out) == ids
    assert temp_files(out) == []


def test_recollect_refuses_a_folder_that_is_no_output_root(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    done = voxlake_recollect([str(tmp_path / "empty")], clean_env())

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: ") and "is not a voxlake output root" in done.stderr
    assert "Traceback" not in done.stderr


def test_recollect_fills_asked_optional_tables_with_gets_only_and_keeps_them(
    tmp_path: Path, server: ServeLocal
) -> None:
    """Issue 22: a run without --sentences records no sentences; `recollect --sentences` fills
    them for every item with one transcript GET and one sentences GET each, and a recollect
    that rewrites an item for another table keeps its sentences (fetched again: free)."""
    media, out = tmp_path / "media", tmp_path / "out"
    media.mkdir()
    for i in range(N):
        write_synth_wav(media / f"clip-{i}.wav", "the birch canoe slid on the smooth planks",
                        1.2 + i * 0.1, sample_rate=8000, seed=i)  # fmt: skip
    env = run_env(server)
    first = voxlake_run([str(media), "--output", str(out)], env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert read_current(out, "sentences").num_rows == 0
    records = [
        json.loads(r)
        for path in (out / "_ledger" / "events").glob("*.parquet")
        for r in pq.read_table(path, columns=["tables"]).column("tables").to_pylist()
        if r is not None
    ]  # the `completed` events' records of the tables written
    assert len(records) == N and not any("sentences" in r or "paragraphs" in r for r in records)
    clips = {f"clip-{i}.wav" for i in range(N)}
    before = routes(server)

    done = voxlake_recollect([str(out), "--sentences"], env)

    assert done.returncode == 0, done.stdout + done.stderr
    after = routes(server)
    new = {route: after.get(route, 0) - before.get(route, 0) for route in after}
    assert {route: n for route, n in new.items() if n} == {"transcript_get": N, "sentences": N}
    assert f"Recollected {N} of {N} transcripts" in done.stdout, done.stdout
    assert {r["media_id"] for r in read_current(out, "sentences").to_pylist()} == clips
    assert {r["media_id"] for r in read_current(out, "words").to_pylist()} == clips
    assert read_current(out, "paragraphs").num_rows == 0  # not asked for

    again = voxlake_recollect([str(out), "--sentences"], env)

    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to recollect" in again.stdout, again.stdout
    assert routes(server) == after

    # A table "added later" (words missing from every record): a plain recollect rewrites
    # every item, and the sentences it had stay current.
    for path in (out / "_ledger" / "events").glob("*.parquet"):
        events = pq.read_table(path)
        records = [
            r if r is None else json.dumps({k: v for k, v in json.loads(r).items() if k != "words"})
            for r in events.column("tables").to_pylist()
        ]
        index = events.column_names.index("tables")
        pq.write_table(events.set_column(index, "tables", pa.array(records, pa.string())), path)

    plain = voxlake_recollect([str(out)], env)

    assert plain.returncode == 0, plain.stdout + plain.stderr
    last = routes(server)
    new = {route: last.get(route, 0) - after.get(route, 0) for route in last}
    assert {route: n for route, n in new.items() if n} == {"transcript_get": N, "sentences": N}
    assert {r["media_id"] for r in read_current(out, "sentences").to_pylist()} == clips
    assert server.submissions() == N  # the first run's, and no other
