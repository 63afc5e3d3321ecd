"""A faithful local AssemblyAI v2 (pre-recorded) server for tests and offline runs.

See docs/local-server.md. Public interface::

    from voxlake.emulator import EmulatorConfig, FaultConfig, FaultSpec, LocalServer

The names load on first use: the sphinx engine's worker processes import
``voxlake.emulator.sphinx``, and this package importing the server eagerly made each of them
load uvicorn, FastAPI and httpx too, ~0.5 s of CPU before its first file (benchmarks/B10).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxlake.emulator.config import (
        DEFAULT_API_KEY,
        ROUTES,
        EmulatorConfig,
        FaultConfig,
        FaultSpec,
        key_fingerprint,
    )
    from voxlake.emulator.engines import (
        Engine,
        EngineError,
        EngineResult,
        EngineWord,
        available_engines,
        get_engine,
        register_engine,
    )
    from voxlake.emulator.persist import StateDirInUseError
    from voxlake.emulator.server import LocalServer

#: Each public name and the module it comes from.
_MODULES = {
    "DEFAULT_API_KEY": "config",
    "ROUTES": "config",
    "EmulatorConfig": "config",
    "FaultConfig": "config",
    "FaultSpec": "config",
    "key_fingerprint": "config",
    "Engine": "engines",
    "EngineError": "engines",
    "EngineResult": "engines",
    "EngineWord": "engines",
    "available_engines": "engines",
    "get_engine": "engines",
    "register_engine": "engines",
    "LocalServer": "server",
    "StateDirInUseError": "persist",
}

__all__ = [
    "DEFAULT_API_KEY",
    "ROUTES",
    "EmulatorConfig",
    "Engine",
    "EngineError",
    "EngineResult",
    "EngineWord",
    "FaultConfig",
    "FaultSpec",
    "LocalServer",
    "StateDirInUseError",
    "available_engines",
    "get_engine",
    "key_fingerprint",
    "register_engine",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value
