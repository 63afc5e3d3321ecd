"""Whether ``voxlake run`` reports to a Prefect API, decided without importing Prefect.

With a Prefect API configured, ``voxlake run`` runs its job as the flow ``transcribe_manifest``
and the run is recorded there, beside the deployments' runs. With none, it runs the same job
(:mod:`voxlake.run.job`) in this process, without Prefect: Prefect 3 would start a temporary
API whose database is deleted when the run ends, and its start-up (importing Prefect, then a
server process booting and migrating a new database) was most of a small run's time
(benchmarks/RESULTS.md, B10). Importing Prefect to ask its settings costs seconds too, so
:func:`configured` reads where Prefect reads an API URL, in its order:

1. ``PREFECT_API_URL`` in the environment;
2. in ``.env``, ``prefect.toml`` (``[api] url``) or ``pyproject.toml`` (``[tool.prefect.api]
   url``) in the current folder;
3. in the active profile (``PREFECT_PROFILE``, else ``active`` in ``profiles.toml``: the file
   ``PREFECT_PROFILES_PATH`` names, else ``$PREFECT_HOME/profiles.toml``, ``PREFECT_HOME``
   defaulting to ``~/.prefect``), which is where ``prefect config set PREFECT_API_URL=...``
   writes it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

API_URL = "PREFECT_API_URL"


def quiet_prefect_defaults() -> None:
    """Keep a CLI run's terminal readable: Prefect logs every task run at INFO by default.

    Only a default: a level the user set in the environment or a Prefect profile wins. Written
    into this process's environment, the one process-wide setting a run makes, because Prefect
    configures its logging from it when it is imported. ``voxlake run`` calls this at its
    start; importing voxlake never does.
    """
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def configured(cwd: Path | None = None) -> bool:
    """True when Prefect would find an API URL (see the module doc); never imports Prefect."""
    folder = cwd or Path.cwd()
    return bool(
        os.environ.get(API_URL)
        or _dotenv(folder / ".env")
        or _toml(folder / "prefect.toml", "api", "url")
        or _toml(folder / "pyproject.toml", "tool", "prefect", "api", "url")
        or _profile_url()
    )


def _dotenv(path: Path) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and name.strip() == API_URL:
            return value.strip().strip("'\"") or None
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}  # Prefect warns about a broken file itself, and ignores it too


def _toml(path: Path, *keys: str) -> str | None:
    value: Any = _read_toml(path)
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) and value else None


def _profile_url() -> str | None:
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    profiles = _read_toml(path)
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    profile = profiles.get("profiles", {}).get(active) if isinstance(active, str) else None
    url = profile.get(API_URL) if isinstance(profile, dict) else None
    return url if isinstance(url, str) and url else None
