"""voxlake: piles of recorded audio and video into analysis-ready Parquet tables via AssemblyAI.

The names a user imports, all from here::

    from voxlake import transcribe_manifest, AssemblyAICredentials   # run (Prefect flow)
    from voxlake import connect, read_current                         # read the output root
    from voxlake import LocalServer, VoxlakeError

They load on first use: ``import voxlake`` alone imports neither Prefect nor Arrow, so the core
modules stay usable (and fast to import) without the Prefect glue (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxlake.credentials import AssemblyAICredentials
    from voxlake.emulator import LocalServer
    from voxlake.errors import VoxlakeError
    from voxlake.flows.backfill import backfill
    from voxlake.flows.transcribe import transcribe_manifest
    from voxlake.lake.read import read_current
    from voxlake.lake.views import connect

# name -> the module that defines it
_EXPORTS = {
    "transcribe_manifest": "voxlake.flows.transcribe",
    "backfill": "voxlake.flows.backfill",
    "AssemblyAICredentials": "voxlake.credentials",
    "read_current": "voxlake.lake.read",
    "connect": "voxlake.lake.views",
    "LocalServer": "voxlake.emulator",
    "VoxlakeError": "voxlake.errors",
}

__all__ = [
    "AssemblyAICredentials",
    "LocalServer",
    "VoxlakeError",
    "backfill",
    "connect",
    "read_current",
    "transcribe_manifest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'voxlake' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
