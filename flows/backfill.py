"""``prefect deploy`` entrypoint ``flows/backfill.py:backfill``.

The flow is :mod:`voxlake.flows.backfill`; this file only names it, so that deployments keep
the path they have always had.
"""

from voxlake.flows.backfill import backfill

__all__ = ["backfill"]
