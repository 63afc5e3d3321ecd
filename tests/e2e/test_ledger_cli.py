"""Pay once, across runs: the real CLI against `voxlake serve-local`, crashed with kill -9.

Every check counts what the server really accepted (``/_voxlake/stats``): a file paid twice is
a second submission. The CLI reports to the suite's Prefect API, so each run is one process of
its own that can be killed at a chosen point (tests/support/clikit.py, voxlake/crashpoints.py).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.support.clikit import (
    ServeLocal,
    run_and_crash,
    run_env,
    temp_files,
    voxlake_run,
)
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.read import read_current

pytestmark = pytest.mark.slow


def make_media(folder: Path, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        write_synth_wav(folder / f"clip-{i:03d}.wav", "the birch canoe", 0.5 + (i % 7) * 0.1,
                        sample_rate=8000, seed=i)  # fmt: skip


def current(out: Path) -> list[tuple[str, str]]:
    """(media_id, status) of each row of the current view (voxlake.lake.read.read_current)."""
    view = read_current(out).select(["media_id", "status"]).to_pylist()
    return [(r["media_id"], r["status"]) for r in view]


def words_once(out: Path) -> bool:
    """The current words hold each (transcript, word_index) once, for every current item."""
    words = read_current(out, "words").select(["transcript_id", "word_index"]).to_pylist()
    return len({(w["transcript_id"], w["word_index"]) for w in words}) == len(words)


# poll:1: the first status round comes when the first jobs are due (VOXLAKE_POLL_FIRST_S after
# their submit, 0.2 s in the suite); it may find this server's 0.1-s jobs all done, and then
# there is no second round.
CRASH_POINTS = ["upload:3", "after_submit:2", "poll:1", "write:1", "finish:1"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_any_point_then_rerun_pays_each_file_once(
    tmp_path: Path, server: ServeLocal, point: str
) -> None:
    media, out = tmp_path / "media", tmp_path / "out"
    make_media(media, 12)
    args = [str(media), "--output", str(out), "--chunk-size", "2"]
    env = run_env(server)

    run_and_crash(args, env, point)
    paid_before_rerun = server.submissions()
    if point.startswith(("after_submit", "poll", "write", "finish")):
        assert paid_before_rerun >= 1  # the crash really came after paying for something

    rerun = voxlake_run(args, env)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert server.submissions() == 12, "a file was paid twice"
    assert current(out) == [(f"clip-{i:03d}.wav", "completed") for i in range(12)]
    assert words_once(out)
    assert temp_files(out) == []


def test_incremental_runs_pay_only_for_new_and_changed_files(
    tmp_path: Path, server: ServeLocal
) -> None:
    media, out = tmp_path / "media", tmp_path / "out"
    make_media(media, 40)
    args = [str(media), "--output", str(out)]
    env = run_env(server)
    paid = []

    first = voxlake_run(args, env)
    paid.append(server.submissions())
    make_media(media, 5, start=40)
    write_synth_wav(media / "clip-007.wav", "a changed recording", 1.7, sample_rate=8000, seed=99)
    second = voxlake_run(args, env)
    paid.append(server.submissions() - paid[0])
    before_third = server.requests()
    third = voxlake_run(args, env)
    paid.append(server.submissions() - sum(paid))

    for done in (first, second, third):
        assert done.returncode == 0, done.stdout + done.stderr
    assert paid == [40, 6, 0]
    assert "45 skipped as already done" in third.stdout, third.stdout
    assert server.requests() == before_third  # nothing to do costs no request at all
    assert len(current(out)) == 45


def test_lost_create_responses_never_pay_twice(tmp_path: Path) -> None:
    # A quarter of creates are handled and their response lost (the connection drops), and as
    # many are handled and answered 503 by a "proxy": the job exists either way.
    server = ServeLocal(
        tmp_path, "--fault", "transcript_create:reset=0.25,p503_after=0.25", "--seed", "3"
    )
    try:
        media, out = tmp_path / "media", tmp_path / "out"
        make_media(media, 30)
        done = voxlake_run([str(media), "--output", str(out)], run_env(server))
        faults = server.stats()["faults_injected"].get("transcript_create", {})
        jobs = server.jobs()
    finally:
        server.stop()

    assert done.returncode == 0, done.stdout + done.stderr
    assert faults.get("reset", 0) >= 3 and faults.get("p503_after", 0) >= 3, faults
    assert len(jobs) == 30, "a file was paid twice"
    assert len({j["audio_url"] for j in jobs}) == 30
    assert current(out) == [(f"clip-{i:03d}.wav", "completed") for i in range(30)]


def test_dry_run_predicts_the_run_and_a_budget_defers_the_rest(
    tmp_path: Path, server: ServeLocal
) -> None:
    media, out = tmp_path / "media", tmp_path / "out"
    make_media(media, 10)
    env = run_env(server)
    args = [str(media), "--output", str(out)]

    dry = voxlake_run([*args, "--dry-run"], env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert server.requests() == 0
    assert not (out / "transcripts").exists()
    predicted_s = float(_after(dry.stdout, "audio hours (").rstrip("s)"))
    predicted_hours = predicted_s / 3600

    # Half the audio: the budget admits the longest files first, until the next would not fit.
    budget = predicted_hours / 2
    capped = voxlake_run([*args, "--max-audio-hours", f"{budget:.6f}"], env)
    assert capped.returncode == 0, capped.stdout + capped.stderr
    first_paid = server.submissions()
    assert 0 < first_paid < 10
    assert f"{10 - first_paid} deferred by the budget" in capped.stdout, capped.stdout

    dry_again = voxlake_run([*args, "--dry-run"], env)
    assert f"would submit {10 - first_paid} items" in dry_again.stdout, dry_again.stdout

    rest = voxlake_run(args, env)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert server.submissions() == 10
    real_hours = (
        duckdb.connect()
        .execute(
            "select sum(audio_duration_s) / 3600 "
            f"from read_parquet('{out}/transcripts/**/*.parquet')"
        )
        .fetchone()
    )
    assert real_hours is not None
    # AssemblyAI reports whole seconds: at most one second apart per file.
    assert abs(real_hours[0] - predicted_hours) <= 10 / 3600


def test_an_output_that_is_a_file_fails_before_any_request(
    tmp_path: Path, server: ServeLocal
) -> None:
    media = tmp_path / "media"
    make_media(media, 3)
    not_a_folder = tmp_path / "out.txt"
    not_a_folder.write_text("taken")

    done = voxlake_run([str(media), "--output", str(not_a_folder)], run_env(server))

    assert done.returncode != 0
    assert "is a file, not a folder" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert server.requests() == 0


def test_a_wrong_api_key_stops_after_one_request(tmp_path: Path, server: ServeLocal) -> None:
    media = tmp_path / "media"
    make_media(media, 6)
    env = run_env(server) | {"ASSEMBLYAI_API_KEY": "not-the-right-key-123"}

    done = voxlake_run([str(media), "--output", str(tmp_path / "out")], env)

    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "not-the-right-key-123" not in out
    assert "Traceback" not in out and "Finished in state" not in out, out
    # Said once, cleanly, naming the endpoint that refused the key.
    (line,) = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("error: "), out
    assert line.count("HTTP 401") == 1 and line.count("refused the API key") == 1, line
    assert f"AssemblyAI at {server.base_url} refused" in line, line
    assert "ASSEMBLYAI_API_KEY" in line and ".." not in line, line
    stats = server.stats()
    assert sum(stats["requests_by_route"].values()) == 1
    assert stats["requests_by_status"] == {"401": 1}
    assert server.submissions() == 0


def _after(text: str, marker: str) -> str:
    assert marker in text, text
    return text.split(marker, 1)[1].split()[0]
