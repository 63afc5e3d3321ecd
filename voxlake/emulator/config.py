"""Configuration of the local AssemblyAI-compatible server.

Fault knobs can come from three places, merged in this order (later wins): the ``FaultConfig``
passed in code, ``VOXLAKE_FAULT_*`` environment variables (see ``faults_from_env``) and repeated
``--fault ROUTE:KNOB=VALUE[,KNOB=VALUE]`` CLI flags (see ``parse_fault_flag``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pydantic import SecretStr

#: Accepted when the server is started without any key (documented in docs/local-server.md).
DEFAULT_API_KEY = "voxlake-local-demo-key"

#: Route names used by fault selectors and in stats. "*" in a selector means every route.
ROUTES = (
    "upload",
    "transcript_create",
    "transcript_list",
    "transcript_get",
    "transcript_delete",
    "sentences",
    "paragraphs",
    "subtitles",
    "word_search",
    "redacted_audio",
)

_KNOBS = (
    "p_429",
    "p_500",
    "p_503",
    "p_504",
    "p_reset",
    "p_503_after",
    "latency_s",
    "retry_after_s",
)


def key_fingerprint(key: str | SecretStr) -> str:
    """A stable, non-reversible label for a key: safe to log and to put in stats."""
    raw = key.get_secret_value() if isinstance(key, SecretStr) else key
    return "key-" + hashlib.sha256(raw.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class FaultSpec:
    """Per-route fault probabilities (each in [0, 1]; their sum must not exceed 1)."""

    p_429: float = 0.0
    p_500: float = 0.0
    p_503: float = 0.0
    p_504: float = 0.0
    p_reset: float = 0.0
    # The request is handled (a submission creates its job), then a 503 replaces the response:
    # a proxy that gave up on a slow backend. The client cannot tell it from a refusal.
    p_503_after: float = 0.0
    latency_s: float = 0.0
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        probs = (self.p_429, self.p_500, self.p_503, self.p_504, self.p_reset, self.p_503_after)
        if any(p < 0 or p > 1 for p in probs) or sum(probs) > 1 + 1e-9:
            raise ValueError("fault probabilities must be in [0, 1] and sum to at most 1")
        if self.latency_s < 0 or self.retry_after_s < 0:
            raise ValueError("latency_s and retry_after_s must be >= 0")

    @property
    def active(self) -> bool:
        return (
            self.latency_s > 0
            or self.p_429 + self.p_500 + self.p_503 + self.p_504 + self.p_reset + self.p_503_after
            > 0
        )


@dataclass(frozen=True)
class FaultConfig:
    """Route selector -> FaultSpec. A route's own entry wins over "*"."""

    routes: Mapping[str, FaultSpec] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.routes:
            if name != "*" and name not in ROUTES:
                raise ValueError(f"unknown fault route {name!r}; expected one of {ROUTES} or '*'")

    def for_route(self, route: str) -> FaultSpec | None:
        spec = self.routes.get(route) or self.routes.get("*")
        return spec if spec is not None and spec.active else None

    def merged(self, other: Mapping[str, Mapping[str, float]]) -> FaultConfig:
        """Overlay knob values (route -> {knob: value}) onto this config."""
        routes = dict(self.routes)
        for route, knobs in other.items():
            routes[route] = replace(routes.get(route, FaultSpec()), **_coerce(knobs))
        return FaultConfig(routes=routes, seed=self.seed)


def _coerce(knobs: Mapping[str, float]) -> dict[str, Any]:
    # FaultSpec fields by name: an int for retry_after_s, a float for every other knob.
    out: dict[str, Any] = {}
    for knob, value in knobs.items():
        if knob not in _KNOBS:
            raise ValueError(f"unknown fault knob {knob!r}; expected one of {_KNOBS}")
        out[knob] = int(value) if knob == "retry_after_s" else float(value)
    return out


def _norm_knob(name: str) -> str:
    # Accept "p503", "p_503", "P503", "latency", "latency_s", "reset".
    n = name.strip().lower().replace("-", "_")
    aliases = {
        "latency": "latency_s",
        "reset": "p_reset",
        "retry_after": "retry_after_s",
        "p503_after": "p_503_after",
    }
    if n in aliases:
        return aliases[n]
    if n.startswith("p") and not n.startswith("p_"):
        n = "p_" + n[1:]
    return n


def parse_fault_flag(flag: str) -> dict[str, dict[str, float]]:
    """Parse ``ROUTE:KNOB=VALUE[,KNOB=VALUE...]`` (ROUTE may be ``*``; omitted means ``*``).

    >>> parse_fault_flag("transcript_get:p503=0.2,latency=0.01")
    {'transcript_get': {'p_503': 0.2, 'latency_s': 0.01}}
    """
    route, sep, rest = flag.partition(":")
    if not sep:
        route, rest = "*", flag
    knobs: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        name, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"bad fault knob {part!r} in {flag!r}; expected KNOB=VALUE")
        knobs[_norm_knob(name)] = float(value)
    _coerce(knobs)  # validates names
    return {route.strip() or "*": knobs}


def faults_from_env(env: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Read ``VOXLAKE_FAULT_<KNOB>`` (all routes) and ``VOXLAKE_FAULT_<ROUTE>__<KNOB>``.

    Examples: ``VOXLAKE_FAULT_P503=0.2``, ``VOXLAKE_FAULT_UPLOAD__P_RESET=0.1``,
    ``VOXLAKE_FAULT_LATENCY=0.05``. ``VOXLAKE_FAULT_SEED`` is read by ``fault_seed_from_env``.
    """
    env = os.environ if env is None else env
    out: dict[str, dict[str, float]] = {}
    for name, value in env.items():
        if not name.startswith("VOXLAKE_FAULT_") or name == "VOXLAKE_FAULT_SEED":
            continue
        rest = name[len("VOXLAKE_FAULT_") :]
        route, sep, knob = rest.partition("__")
        if not sep:
            route, knob = "*", rest
        knob = _norm_knob(knob)
        out.setdefault(route.lower() if route != "*" else "*", {})[knob] = float(value)
    for knobs in out.values():
        _coerce(knobs)
    return out


def fault_seed_from_env(env: Mapping[str, str] | None = None) -> int | None:
    env = os.environ if env is None else env
    raw = env.get("VOXLAKE_FAULT_SEED")
    return int(raw) if raw else None


@dataclass
class EmulatorConfig:
    """Everything the emulator can be told. All durations are seconds."""

    api_keys: Iterable[str | SecretStr] = ()
    concurrency_limit: int = 5
    processing_fixed_s: float = 0.05
    processing_per_audio_s: float = 0.0
    rate_limit: int = 20_000
    rate_window_s: float = 300.0
    upload_dir: Path | str | None = None
    #: Where uploads and transcripts are kept across restarts (voxlake.emulator.persist);
    #: None: in memory only (uploads in ``upload_dir`` or a temporary directory).
    state_dir: Path | str | None = None
    upload_ttl_s: float = 86_400.0
    max_upload_bytes: int = 2_200_000_000
    #: Transcription engine: "auto" (sphinx when pocketsphinx is importable, else scripted),
    #: "sphinx" or "scripted" (deterministic; what the tests use). See engines.py.
    engine: str = "auto"
    faults: FaultConfig = field(default_factory=FaultConfig)
    public_base_url: str | None = None
    #: Wall clock (epoch seconds) for created/completed stamps and upload expiry; tests inject
    #: a fake one to expire uploads without sleeping.
    clock: Callable[[], float] = time.time
    #: Webhook delivery: attempts in total and the pause between them (AssemblyAI: 10, ~seconds).
    webhook_attempts: int = 10
    webhook_timeout_s: float = 10.0
    webhook_retry_delay_s: float = 1.0
    #: Timeout for fetching a non-upload audio_url.
    download_timeout_s: float = 30.0
    #: Worker threads for engine work; None -> sized to the machine.
    engine_workers: int | None = None

    def __post_init__(self) -> None:
        # Keys become SecretStr at once so that reprs/tracebacks of the config never show them.
        keys = [k if isinstance(k, SecretStr) else SecretStr(str(k)) for k in self.api_keys]
        if any(not k.get_secret_value() for k in keys):
            raise ValueError("API keys must be non-empty")
        self.api_keys = tuple(keys)
        if self.concurrency_limit < 1:
            raise ValueError("concurrency_limit must be >= 1")
        if self.rate_limit < 1 or self.rate_window_s <= 0:
            raise ValueError("rate_limit must be >= 1 and rate_window_s > 0")
        if self.processing_fixed_s < 0 or self.processing_per_audio_s < 0:
            raise ValueError("processing times must be >= 0")
        if self.webhook_attempts < 1:
            raise ValueError("webhook_attempts must be >= 1")

    @property
    def secret_keys(self) -> tuple[SecretStr, ...]:
        # __post_init__ made every key a SecretStr; the filter tells the type checker so.
        keys = tuple(k for k in self.api_keys if isinstance(k, SecretStr))
        return keys or (SecretStr(DEFAULT_API_KEY),)

    @property
    def uses_default_key(self) -> bool:
        return not tuple(self.api_keys)

    def __repr__(self) -> str:  # dataclass repr would list SecretStr (masked) but keep it short
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "api_keys"
        )
        return f"EmulatorConfig(api_keys=<{len(self.secret_keys)} keys>, {shown})"
