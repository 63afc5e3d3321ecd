"""`voxlake run` imports Prefect and the flow with the garbage collector off, then freezes."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_imports_run_without_gc_and_leave_it_on_with_their_objects_frozen() -> None:
    program = textwrap.dedent(
        """
        import gc, sys
        from voxlake.cli.run import _imports_without_gc

        assert "prefect" not in sys.modules
        with _imports_without_gc():
            during = gc.isenabled()
            import voxlake.flows.transcribe
        print(during, gc.isenabled(), gc.get_freeze_count() > 100_000)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True"]


def test_a_process_that_imported_prefect_already_is_left_alone() -> None:
    import prefect  # noqa: F401  as a test session or a notebook has

    from voxlake.cli.run import _imports_without_gc

    frozen = gc.get_freeze_count()
    with _imports_without_gc():
        assert gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
