"""voxlake's settings from the environment: every ``VOXLAKE_*`` variable is read here, only here.

:func:`settings` parses the process environment once (then cached) into a typed, frozen
:class:`Settings`; a bad value stops with :class:`SettingsError` naming the variable. Modules take
their value from it instead of reading ``os.environ``, so the variables are not hidden
parameters scattered through the package. :meth:`Settings.from_env` parses any mapping (a
worker's environment, a test's dict). The local server's fault knobs (``VOXLAKE_FAULT_*``) are
the exception: the emulator shares no code with the client, so :mod:`voxlake.emulator.config`
reads them itself.

=================================== ============================================================
``VOXLAKE_POLL_FIRST_S``            seconds from a job's submit to its first status poll
                                    (0 to 3600; default 3)
``VOXLAKE_ACCOUNT_RATE_LIMIT``      the account's API rate limit, ``REQUESTS/SECONDS``
                                    (default AssemblyAI's 20000/300)
``VOXLAKE_S3_DEBUG_LOGGING``        ``1`` lets botocore's DEBUG wire log (with credentials) through
``VOXLAKE_HOME``                    the checkout a deployment's worker runs from
``VOXLAKE_ENGINE``                  the embedded local server's engine (default ``auto``)
``VOXLAKE_LOCAL_API_KEYS``          comma-separated keys ``voxlake serve-local`` accepts
``VOXLAKE_TEST_HOOKS``              ``1`` arms the test hooks below; never set it for a real run
``VOXLAKE_CRASHPOINT``              ``<name>[:<n>]``: stop the process there (test hook, see
                                    :mod:`voxlake.crashpoints`); ignored without the opt-in
=================================== ============================================================
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from voxlake.errors import ConfigurationError

POLL_FIRST_ENV = "VOXLAKE_POLL_FIRST_S"
ACCOUNT_ENV = "VOXLAKE_ACCOUNT_RATE_LIMIT"
S3_DEBUG_ENV = "VOXLAKE_S3_DEBUG_LOGGING"
HOME_ENV = "VOXLAKE_HOME"
ENGINE_ENV = "VOXLAKE_ENGINE"
LOCAL_API_KEYS_ENV = "VOXLAKE_LOCAL_API_KEYS"
TEST_HOOKS_ENV = "VOXLAKE_TEST_HOOKS"
CRASHPOINT_ENV = "VOXLAKE_CRASHPOINT"

#: Seconds from a job's submit to its first status poll: AssemblyAI rarely finishes sooner.
DEFAULT_FIRST_POLL_S = 3.0


class SettingsError(ConfigurationError, ValueError):
    """A ``VOXLAKE_*`` variable has a value that cannot be used (the message names it).

    Also a :class:`ValueError`, as the account limit's parse error was before it moved here."""


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    """The one float parser: unset or blank gives ``default``; else a number in [lo, hi]."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:  # also false for nan
        raise SettingsError(
            f"{name}={text!r} is not a number of seconds from {lo:g} to {hi:g}; "
            f"unset it for the default, {default:g} s"
        )
    return value


def _rate_limit(env: Mapping[str, str]) -> tuple[int, float] | None:
    text = env.get(ACCOUNT_ENV, "").strip()
    if not text:
        return None
    requests, sep, seconds = text.partition("/")
    try:
        if not sep:
            raise ValueError("no '/'")
        return int(requests), float(seconds)
    except ValueError as exc:
        raise SettingsError(
            f"{ACCOUNT_ENV}={text!r}: expected REQUESTS/SECONDS, e.g. 20000/300 ({exc})"
        ) from None


@dataclass(frozen=True)
class Settings:
    """voxlake's environment, parsed. Field defaults are what an unset variable means."""

    poll_first_s: float = DEFAULT_FIRST_POLL_S
    #: ``(requests, seconds)``; None: AssemblyAI's documented limit.
    account_rate_limit: tuple[int, float] | None = None
    s3_debug_logging: bool = False
    home: Path | None = None
    engine: str = "auto"
    local_api_keys: tuple[str, ...] = ()
    #: The crash point to stop at, only when the test hooks are armed (VOXLAKE_TEST_HOOKS=1).
    crashpoint: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        env = environ
        hooks = env.get(TEST_HOOKS_ENV, "").strip() == "1"
        home = env.get(HOME_ENV)
        return cls(
            poll_first_s=_float(env, POLL_FIRST_ENV, DEFAULT_FIRST_POLL_S, 0, 3600),
            account_rate_limit=_rate_limit(env),
            s3_debug_logging=env.get(S3_DEBUG_ENV) == "1",
            home=Path(home) if home else None,
            engine=env.get(ENGINE_ENV) or "auto",
            local_api_keys=tuple(
                k.strip() for k in env.get(LOCAL_API_KEYS_ENV, "").split(",") if k.strip()
            ),
            # A stray VOXLAKE_CRASHPOINT in a user's shell must not stop their run: test hooks
            # fire only with the explicit opt-in as well.
            crashpoint=(env.get(CRASHPOINT_ENV) or None) if hooks else None,
        )


@functools.cache
def settings() -> Settings:
    """The process environment's settings, parsed on first use. A test that changes the
    environment in-process calls ``settings.cache_clear()`` afterwards."""
    return Settings.from_env()
