"""Named points where the crash tests stop the real process, to ``kill -9`` it exactly there.

A test hook, armed only by an explicit opt-in: with ``VOXLAKE_TEST_HOOKS=1`` **and**
``VOXLAKE_CRASHPOINT=<name>[:<n>]`` in the environment (read by :mod:`voxlake.settings`), the
process sends itself SIGSTOP the ``n``-th time (default 1st) it reaches :func:`crashpoint`
``name``; the test sees it stopped and kills it (and its children) with SIGKILL. A
``VOXLAKE_CRASHPOINT`` left in a user's shell without the opt-in does nothing. Unarmed, this is
one cached attribute read.
Points: ``upload`` (an upload finished), ``after_submit`` (a job was created, not yet in the
ledger), ``poll`` (a status round finished), ``write`` (table files published, ledger not yet
told), ``delete`` (outcomes and ``deleting`` recorded, no transcript deleted yet:
--delete-after-collect), ``finish`` (everything recorded, lease not yet released).
"""

from __future__ import annotations

import os
import signal
import threading

from voxlake.settings import settings

_counts: dict[str, int] = {}
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    spec = settings().crashpoint
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted != name:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name] == int(nth or 1)
    if hit:
        os.kill(os.getpid(), signal.SIGSTOP)
