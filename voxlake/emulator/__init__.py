"""A faithful local AssemblyAI v2 (pre-recorded) server for tests and offline runs.

See docs/local-server.md. Public interface::

    from voxlake.emulator import EmulatorConfig, FaultConfig, FaultSpec, LocalServer
"""

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
