"""voxlake command line. Thin: the commands parse, check and call the library (the emulator's
logic lives in voxlake.emulator).

One module per command, each registering itself on the shared :data:`app`
(:mod:`voxlake.cli.common`); a new command is a new module imported below. They import
nothing heavy (Prefect, pyarrow, pandas) at module level: their functions do, when run.
"""

from __future__ import annotations

import os
import signal

from voxlake.cli.common import app

# The commands register themselves on app when imported, in the order --help lists them.
# isort: off
from voxlake.cli import serve_local, run, query, report, purge  # noqa: F401
from voxlake.cli import serve, webhooks, recollect  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """The ``voxlake`` command (console script and ``python -m voxlake.cli``).

    Ctrl-C (SIGINT) interrupts every command, even one started with SIGINT ignored, as a
    non-interactive shell starts its background jobs: Python then installs no handler, and
    ``voxlake serve`` ran on after ``kill -INT`` until it was killed.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Arrow's allocator for this process and the ones it starts (a served flow run's), chosen
    # before anything imports pyarrow: its default here (mimalloc) keeps what it frees, and a
    # 100,000-item ledger lookup peaked ~50 MB higher with it, no faster (docs/ledger.md).
    # Here, not at import: a notebook that imports voxlake keeps its own allocator. A value
    # the user set still chooses.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    app()
