"""What every ``voxlake`` command shares: the Typer app, its callback (``--version``, the
environment read first), the exit statuses, the Ctrl-C handling and the ``--s3-*`` options.

The commands are one module each beside this one, registered on :data:`app` when
:mod:`voxlake.cli` imports them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from voxlake.storage import S3Options

# Click's plain help, not typer's rich panels: rich cuts option names and help with "…" to
# fit its table into the terminal (or 80 columns when piped); click wraps them instead.
app = typer.Typer(
    help="voxlake: audio piles to Parquet via AssemblyAI.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


# The S3 options of every command that reads or writes an output root, declared once.
S3EndpointUrl = Annotated[
    str | None,
    typer.Option(help="S3-compatible endpoint (MinIO, R2, Ceph); or AWS_ENDPOINT_URL_S3."),
]
S3Region = Annotated[str | None, typer.Option(help="S3 region; or AWS_REGION.")]
S3Profile = Annotated[str | None, typer.Option(help="AWS profile; or AWS_PROFILE.")]


def _s3_flags(
    endpoint_url: str | None, region: str | None, profile: str | None
) -> dict[str, object]:
    """The ``--s3-*`` values given (non-secret settings only: credentials come from the AWS
    chain: environment, profile, role)."""
    given = {"endpoint_url": endpoint_url, "region": region, "profile": profile}
    return {name: value for name, value in given.items() if value}


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version  # the installed package's, nothing heavy

        typer.echo(f"voxlake {version('voxlake')}")
        raise typer.Exit()


@app.callback()
def _main(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """voxlake command line."""
    from voxlake.settings import settings  # no dependency: nothing heavy

    # The environment is read here, at the edge, before any command: a bad VOXLAKE_* value
    # ends it with one line naming the variable, not a traceback from deep inside a run.
    with _exits_on_error():
        settings()


def exit_status(error: Exception) -> int:
    """The exit status of a command that ``error`` ended: the one place that decides it.

    0: done. 1: ``voxlake run`` finished but items failed (its summary says which and how to
    retry them). 2: a :class:`voxlake.errors.VoxlakeError` (the command could not do what was
    asked: bad input, configuration, a store or API that refused; its message says what to
    do), or a usage error. 130: Ctrl-C (:func:`_stops_on_interrupt`).
    """
    return 2


def _fail(error: Exception) -> typer.Exit:
    """Say ``error`` in one line on stderr, no traceback; the exit that ends the command."""
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(exit_status(error))


@contextlib.contextmanager
def _exits_on_error() -> Iterator[None]:
    """Any :class:`voxlake.errors.VoxlakeError` ends the command as :func:`exit_status` says."""
    from voxlake.errors import VoxlakeError  # no dependency: nothing heavy

    try:
        yield
    except VoxlakeError as exc:
        raise _fail(exc) from None


@contextlib.contextmanager
def _stops_on_interrupt(message: str) -> Iterator[None]:
    """Ctrl-C (SIGINT) ends a command with one line on stderr and status 130 (128 + SIGINT,
    as shells report a command it killed), and no traceback. ``message`` says what happened and
    what to do, unless the command said it itself (a ``KeyboardInterrupt`` subclass does:
    voxlake.runner.RunInterrupted). A decorator of the commands that run until interrupted."""
    try:
        yield
    except KeyboardInterrupt as exc:
        if type(exc) is KeyboardInterrupt:
            typer.echo(message, err=True)
        raise typer.Exit(130) from None


def _read_s3_options(
    endpoint_url: str | None, region: str | None, profile: str | None
) -> S3Options | None:
    """The S3 options ``voxlake query`` and ``voxlake report`` read a root with, or exit 2."""
    from voxlake.storage import s3_options_from_flags

    try:
        return s3_options_from_flags(_s3_flags(endpoint_url, region, profile))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
