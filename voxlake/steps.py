"""Prefect deployment steps of voxlake's ``deployments/prefect.yaml``.

``set_project_directory`` is the pull step: a worker's flow-run process starts in a temporary
folder and must change to the checkout that holds ``flows/`` before it imports the entrypoint.
That checkout is where this package is installed from (``uv sync`` installs it editable), so
each machine finds its own clone wherever it is, with nothing to configure; ``VOXLAKE_HOME``
overrides it. A literal path would be the deploying machine's, and a relative one would be
resolved against the temporary folder.
"""

from __future__ import annotations

from pathlib import Path

from voxlake.settings import HOME_ENV, settings


def project_directory() -> Path:
    """The checkout this package runs from (the folder with ``flows/``), or ``VOXLAKE_HOME``."""
    root = settings().home or Path(__file__).resolve().parents[1]
    if not (root / "flows").is_dir():
        raise RuntimeError(
            f"{root} has no flows/ folder: run the worker from a voxlake checkout installed "
            f"with 'uv sync' (editable), or set {HOME_ENV} to the checkout"
        )
    return root


def set_project_directory() -> dict[str, str]:
    """Pull step: ``prefect.deployments.steps.set_working_directory`` to the checkout."""
    from prefect.deployments.steps.pull import set_working_directory

    return set_working_directory(str(project_directory()))
