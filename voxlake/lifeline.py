"""Child processes that never outlive the process that started them, even after ``kill -9``.

``voxlake serve`` starts a ``prefect server start`` and a ``prefect worker``. Killed with
SIGKILL, it has no chance to stop them, and they would serve and poll on, orphaned, holding the
port and the database. So :func:`start` runs each as ``python -m voxlake.lifeline COMMAND…``, a
small watchdog that

- runs COMMAND in a session of its own, so that COMMAND and everything it starts (a worker's
  flow-run processes) can be signalled as one process group;
- holds, on its own stdin, the read end of a pipe whose write end only the parent has. The
  kernel closes that end when the parent exits, however it exits; the watchdog then reads
  end-of-file and stops the group: SIGTERM (uvicorn finishes its requests, a worker
  deregisters), and SIGKILL for whatever is left after :data:`GRACE_S`;
- passes SIGINT, SIGTERM and SIGHUP on to the group, clears the group when COMMAND ends, and
  exits with COMMAND's status, so that to the parent it stands for COMMAND.

Why not Linux's ``PR_SET_PDEATHSIG`` (``prctl`` in a ``preexec_fn``): it is Linux only;
``preexec_fn`` is unsafe once the parent has threads (``voxlake serve`` starts its worker after
Prefect's client has started some); the signal fires when the *thread* that started the child
ends, not the process; and it reaches the direct child only, not the processes that child
starts. The pipe has none of these limits.

Ctrl-C reaches every process of the terminal's foreground group at once. Helpers that the
command stops itself (the local server's recognition workers) are started by
:func:`sigint_blocked`, so only the command sees it and can stop them in order: recognition
workers that died first were respawned for the next job.

Standard library only: the watchdog starts fast and stays small (one per child).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

#: How long a supervised server may take to answer after it is started (``voxlake serve``'s
#: Prefect server, PostgreSQL), and how often it is asked meanwhile.
STARTUP_TIMEOUT_S = 180.0
POLL_S = 0.2

# Long enough for a Prefect server to finish its requests and a worker to deregister.
GRACE_S = 10.0
POLL_S = 0.05
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def start(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` under the watchdog; it ends when this process ends, or at :func:`stop`.
    ``stdout`` and ``stderr`` as for :class:`subprocess.Popen` (the watchdog passes them on)."""
    return subprocess.Popen(
        [sys.executable, "-m", "voxlake.lifeline", *cmd],
        # The lifeline. Python opens it close-on-exec, so no other child inherits its write end
        # (which would keep it open after this process died).
        stdin=subprocess.PIPE,
        stdout=stdout,
        stderr=stderr,
        env=None if env is None else dict(env),
        cwd=cwd,
    )


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in the calling thread for the block: processes started in it begin with
    SIGINT blocked (fork copies the thread's signal mask, exec keeps it), so a Ctrl-C at the
    terminal leaves them alone, even while they are still starting up, and the process that
    started them decides when they stop (SIGTERM, SIGKILL, or their lifeline). A SIGINT
    that arrives meanwhile is delivered to this process when the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop(process: subprocess.Popen[bytes]) -> int:
    """Stop what :func:`start` started: close the lifeline and wait for the watchdog, which
    stops the command's group (SIGTERM, then SIGKILL after :data:`GRACE_S`). Its status."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        return process.wait(timeout=GRACE_S + 30)
    except subprocess.TimeoutExpired:  # the watchdog itself is stuck: nothing else to try
        process.kill()
        return process.wait()


def run(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: int | IO[Any] | None = None,
    stderr: int | IO[Any] | None = None,
) -> int:
    """Run ``cmd`` to its end under the watchdog (stopped if this process is interrupted)."""
    process = start(cmd, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
    try:
        return process.wait()
    finally:
        stop(process)


def on_stdin_eof(action: Callable[[], object]) -> None:
    """Call ``action`` in a daemon thread once stdin reaches end-of-file: the process that holds
    the pipe's other end closed it or died (the kernel closes it either way)."""

    stdin = sys.stdin.fileno()

    def watch() -> None:
        # The raw descriptor, not sys.stdin.buffer: a daemon thread blocked inside the buffered
        # reader holds its lock, and the interpreter aborts at exit when it cannot take it.
        while os.read(stdin, 4096):  # the parent never writes; b"" is end-of-file
            pass
        action()

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


# os.waitid, which can look at an exit without reaping it: Linux and the BSDs; macOS only from
# Python 3.13.
_WAITID = sys.platform != "darwin" or sys.version_info >= (3, 13)


def _exited(child: subprocess.Popen[bytes], *, block: bool = False) -> bool:
    """Whether COMMAND has exited (``block``: wait for it). Where it can, it leaves COMMAND
    unreaped: until then its pid, the group's id, cannot be reused, so signalling the group
    never reaches an unrelated process. (Elsewhere that relies on pids not being reused at
    once, which the kernel avoids.)"""
    if _WAITID:
        flags = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
        return os.waitid(os.P_PID, child.pid, flags) is not None
    if block:
        child.wait()
    return child.poll() is not None


def watchdog(cmd: Sequence[str]) -> int:
    """The watchdog process (see the module doc); COMMAND's exit status."""
    pending: list[int] = []
    group: list[int] = []  # COMMAND's pid, which is its group's id, once started

    def forward(signum: int, _frame: FrameType | None) -> None:
        if group:
            _signal_group(group[0], signum)
        else:  # arrived before COMMAND started: delivered right after
            pending.append(signum)

    for forwarded in FORWARDED:
        signal.signal(forwarded, forward)
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
    group.append(child.pid)
    for signum in pending:
        _signal_group(child.pid, signum)

    def parent_gone() -> None:
        _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and not _exited(child):
            time.sleep(POLL_S)
        _signal_group(child.pid, signal.SIGKILL)

    on_stdin_eof(parent_gone)
    # Until COMMAND exits (a forwarded signal interrupts the wait, which then resumes); then
    # nothing of its group may stay behind.
    _exited(child, block=True)
    _signal_group(child.pid, signal.SIGKILL)
    status = child.wait()
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m voxlake.lifeline COMMAND [ARG...]  (stdin: the lifeline)")
    sys.exit(watchdog(sys.argv[1:]))
