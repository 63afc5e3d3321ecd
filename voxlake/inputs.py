"""A run's inputs, checked before anything starts: the manifest and the option values.

``voxlake run`` calls :func:`check_run_inputs` before it starts the embedded AssemblyAI server
or waits for a Prefect API, so a missing path, a bad manifest row or a bad option value is one
message and exit code 2 within a second or two, not an error after the servers' start-up. The
manifest it read is handed to the flow (:func:`manifest_read_before`), which reads it only if
it was not read with the same arguments in this process: a deployment's run reads it itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from voxlake.errors import VoxlakeError
from voxlake.estimate import check_budget, load_prices
from voxlake.manifest import Manifest, TranscriptionOptions, option_problems, read_manifest
from voxlake.storage import S3Options, s3_options_from_flags

__all__ = ["InputError", "RunInputs", "check_run_inputs", "manifest_read_before", "read_once"]


class InputError(VoxlakeError):
    """An option value a run cannot use; the message names the option and what to give."""


@dataclass(frozen=True)
class RunInputs:
    """What :func:`check_run_inputs` validated, in the form the flow takes."""

    manifest: Manifest
    read_arguments: dict[str, Any]  # read_manifest's arguments that read ``manifest``
    s3: S3Options | None
    prices: dict[str, float] | None


def check_run_inputs(
    manifest: str,
    *,
    options: Mapping[str, Any] | None,
    on_invalid: str,
    media_extensions: list[str] | None,
    s3: Mapping[str, Any] | None,
    content_hash: bool,
    max_audio_hours: float | None,
    price_table: str | None,
) -> RunInputs:
    """Validate every input of a run and read its manifest; no request to any server.

    Raises :class:`InputError` for an option value (worded with the CLI's option names) and
    :class:`~voxlake.manifest.ManifestError` for the manifest.
    """
    if on_invalid not in ("fail", "skip"):
        raise InputError(f"--on-invalid must be 'fail' or 'skip', not {on_invalid!r}")
    try:
        check_budget(max_audio_hours)
    except ValueError:
        raise InputError(
            f"--max-audio-hours must be more than 0 (got {max_audio_hours:g}); leave it out "
            "for no budget"
        ) from None
    try:
        s3_options = s3_options_from_flags(s3 or {})
    except ValueError as exc:
        raise InputError(str(exc)) from None
    try:
        prices = load_prices(price_table) if price_table else None
    except ValueError as exc:
        raise InputError(f"--price-table: {exc}") from None
    if options:
        _check_options(options)
    mode: Literal["fail", "skip"] = "skip" if on_invalid == "skip" else "fail"
    arguments: dict[str, Any] = {
        "path": manifest,
        "defaults": dict(options) if options else None,
        "on_invalid": mode,
        "media_extensions": media_extensions,
        "s3": s3_options,
        "content_hash": content_hash,
    }
    return RunInputs(read_manifest(**arguments), arguments, s3_options, prices)


def _check_options(options: Mapping[str, Any]) -> None:
    """The run's options (``--option``, ``--speaker-labels``...), checked as a manifest's are."""
    try:
        TranscriptionOptions.model_validate(dict(options))
    except ValidationError as exc:
        problems = option_problems(exc, options)
        lines = [f"option {p.column}: {p.problem} — {p.fix}" for p in problems]
        heading = "a run option is not valid" if len(lines) == 1 else "run options are not valid"
        raise InputError("\n  ".join([f"{heading} (--option NAME=VALUE):", *lines])) from None


# The manifest this process read before the flow started, with the arguments it was read with.
_READ_BEFORE: ContextVar[tuple[dict[str, Any], Manifest] | None] = ContextVar(
    "voxlake_manifest_read_before", default=None
)


@contextmanager
def manifest_read_before(inputs: RunInputs) -> Iterator[None]:
    """Within the block, :func:`read_once` with the same arguments returns ``inputs.manifest``."""
    token = _READ_BEFORE.set((inputs.read_arguments, inputs.manifest))
    try:
        yield
    finally:
        _READ_BEFORE.reset(token)


def read_once(**arguments: Any) -> Manifest:
    """``read_manifest(**arguments)``, unless this process read it so already (see above).

    Reading again would repeat every stat, every S3 HEAD and, with ``content_hash``, every
    file's hash; a caller that read it with other arguments gets a fresh read.
    """
    known = _READ_BEFORE.get()
    if known is not None and known[0] == arguments:
        return known[1]
    return read_manifest(**arguments)
