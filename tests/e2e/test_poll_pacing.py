"""A small run's status polls, through the real `voxlake run` with the production pacing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.clikit import ServeLocal, run_env, voxlake_run
from voxlake.emulator.synth import write_synth_wav
from voxlake.settings import POLL_FIRST_ENV

pytestmark = pytest.mark.slow


def test_a_small_run_costs_about_three_requests_per_file(tmp_path: Path) -> None:

    media = tmp_path / "media"
    media.mkdir()
    for i in range(12):
        write_synth_wav(media / f"clip-{i:02d}.wav", f"clip number {i}", 1.0, seed=i)
    # One job at a time, 1 s each: the jobs finish about one a second for 12 s.
    server = ServeLocal(tmp_path, "--concurrency", "1", "--processing-fixed", "1.0")
    try:
        # Without the suite's VOXLAKE_POLL_FIRST_S: the first poll 3 s after a submit, as for
        # AssemblyAI.
        env = run_env(server)
        env.pop(POLL_FIRST_ENV, None)
        done = voxlake_run([str(media), "--output", str(tmp_path / "out"), "--no-report"], env)
        routes = server.stats()["requests_by_route"]
    finally:
        server.stop()

    assert done.returncode == 0, done.stdout + done.stderr
    assert "12/12 completed" in done.stdout, done.stdout + done.stderr
    assert (routes["upload"], routes["transcript_create"], routes["transcript_get"]) == (12, 12, 12)
    # The key check and the status rounds: about 5 (a round every 0.5 s made about 20).
    assert routes["transcript_list"] <= 8, routes
    assert sum(routes.values()) / 12 <= 3.7, routes
