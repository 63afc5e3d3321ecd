"""The sphinx engine's worker processes end with the server, even mid-recognition
(``voxlake.emulator.sphinx.kill_pool``, which finds them by the pids they announce)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clikit import wait_until
from tests.emulator.helpers import client, submit, upload
from voxlake.emulator import LocalServer, sphinx

pytestmark = pytest.mark.sphinx

DATA = Path(__file__).resolve().parents[2] / "data" / "media"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stopping_the_server_mid_job_kills_the_recognition_workers(
    make_server: Callable[..., LocalServer],
) -> None:
    server = make_server(engine="sphinx")
    with client(server) as c:
        submit(c, upload(c, (DATA / "harvard-10.m4a").read_bytes()))  # a minute of speech
        server.wait_until(lambda s: s["processing"] >= 1, timeout=30)
        pids = wait_until(sphinx.worker_pids, "a recognition worker to start", deadline_s=60)
    workers = [p for p in multiprocessing.active_children() if p.pid in pids]
    assert server.stats()["completed"] == 0  # stopped mid-recognition, not after it
    server.stop()
    # Killed (not left to finish the minute of audio and exit), and reaped: not even a zombie.
    assert [w.exitcode for w in workers] == [-signal.SIGKILL] * len(pids)
    wait_until(lambda: not any(map(_alive, pids)), "the workers to be gone", deadline_s=30)
    assert sphinx.worker_pids() == []
