"""Where the AssemblyAI reference (openapi.yml, fixtures) is: one setting, looked up here only.

``VOXLAKE_REFERENCE_DIR`` names the reference folder (the one holding ``assemblyai/``); unset,
it is ``../shared/reference`` beside the repository. The reference is not in the repository, so
the contract tests skip, saying how to provide it, when the default folder is absent. A folder
named explicitly must exist: ``.ci/run`` sets the variable, so CI fails rather than skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "VOXLAKE_REFERENCE_DIR"
REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO.parent / "shared" / "reference"


def reference_dir() -> Path:
    return Path(os.environ.get(ENV) or DEFAULT)


def assemblyai(*parts: str) -> Path:
    """A path under ``<reference>/assemblyai``; skips the calling test when it is not there."""
    path = reference_dir().joinpath("assemblyai", *parts)
    if path.exists():
        return path
    # One message for every missing file, so that the summary shows it once for all the skips.
    message = (
        f"AssemblyAI reference not found in {reference_dir()}: set {ENV} to the folder holding "
        f"assemblyai/ (openapi.yml, fixtures/), or place it at {DEFAULT}."
    )
    if os.environ.get(ENV):
        pytest.fail(message, pytrace=False)  # named explicitly (as CI does): never a skip
    pytest.skip(message)
