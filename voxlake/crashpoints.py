"""Named points where the crash tests stop the real process, to ``kill -9`` it exactly there.

With ``VOXLAKE_CRASHPOINT=<name>[:<n>]`` in the environment, the process sends itself SIGSTOP
the ``n``-th time (default 1st) it reaches :func:`crashpoint` ``name``; the test sees it stopped
and kills it (and its children) with SIGKILL. Without the variable this is one dict lookup.
Points: ``upload`` (an upload finished), ``after_submit`` (a job was created, not yet in the
ledger), ``poll`` (a status round finished), ``write`` (table files published, ledger not yet
told), ``finish`` (everything recorded, lease not yet released).
"""

from __future__ import annotations

import os
import signal
import threading

_counts: dict[str, int] = {}
_lock = threading.Lock()


def crashpoint(name: str) -> None:
    spec = os.environ.get("VOXLAKE_CRASHPOINT")
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
