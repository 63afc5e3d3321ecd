"""voxlake.lifeline on real processes: a child and its own child end when the parent that
started them is killed with SIGKILL, even one that ignores SIGTERM; statuses pass through."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil

from tests.support.clikit import wait_until
from voxlake import lifeline

REPO = Path(__file__).resolve().parents[2]

# The command under the watchdog: it ignores SIGTERM (so only the watchdog's SIGKILL ends it),
# starts a grandchild, writes both pids, and waits.
COMMAND = textwrap.dedent(
    """
    import os, signal, subprocess, sys
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    with open(sys.argv[1], "w") as pids:
        pids.write(f"{os.getpid()} {grandchild.pid}")
    signal.pause()
    """
)

PARENT = textwrap.dedent(
    """
    import signal, sys
    from voxlake import lifeline
    watchdog = lifeline.start([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    print(watchdog.pid, flush=True)
    signal.pause()  # until killed
    """
)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill_9_of_the_parent_ends_the_command_and_its_children(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, COMMAND, str(pids_file)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    started: list[int] = []
    try:
        assert parent.stdout is not None
        started.append(int(parent.stdout.readline()))
        text = wait_until(lambda: pids_file.exists() and pids_file.read_text(), "the pids")
        started += [int(pid) for pid in text.split()]
        assert all(alive(pid) for pid in started)

        parent.kill()
        parent.wait()

        # The grandchild goes at SIGTERM; the command only at the SIGKILL, GRACE_S later.
        wait_until(
            lambda: not any(alive(pid) for pid in started),
            f"watchdog, command and grandchild gone: {started}",
            deadline_s=lifeline.GRACE_S + 60,
        )
    finally:
        for pid in started:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_statuses_pass_through_and_stop_ends_the_command() -> None:
    assert lifeline.run([sys.executable, "-c", "raise SystemExit(3)"]) == 3
    process = lifeline.start([sys.executable, "-c", "import signal; signal.pause()"])
    command = wait_until(lambda: psutil.Process(process.pid).children(), "the command started")
    assert lifeline.stop(process) == 128 + signal.SIGTERM
    assert not alive(command[0].pid)
