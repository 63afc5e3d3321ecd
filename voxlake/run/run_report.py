"""The HTML report a flow run writes beside its tables (``<output>/reports/<run id>.html``)."""

from __future__ import annotations

import contextlib
import logging

from voxlake.storage import S3Options

logger = logging.getLogger(__name__)


def preload_report() -> None:
    """Load what :func:`write_run_report` needs (DuckDB, matplotlib, its fonts), so that a run
    can do it while it waits for its last jobs. Failures are left for the report to report."""
    with contextlib.suppress(Exception):
        from voxlake.analytics_report import preload

        preload()


def write_run_report(output: str, run_id: str, s3: S3Options | None = None) -> str | None:
    """Write the run's HTML report to ``<output>/reports/<run id>.html``; its path, or None.

    A report that cannot be written is logged, never a failure of the run: the tables are what
    the run owes.
    """
    from voxlake.analytics_report import write_report

    target = f"{output.rstrip('/')}/reports/{run_id}.html"
    try:
        return write_report(output, out=target, run_id=run_id, s3=s3)
    except Exception as exc:  # plotting or reading problems must not fail a finished run
        logger.warning("the run's report could not be written: %s", exc)
        return None
