"""Entrypoints for ``deployments/prefect.yaml`` and ``prefect deploy``; the flows are in
:mod:`voxlake.flows` (shipped with the package)."""
