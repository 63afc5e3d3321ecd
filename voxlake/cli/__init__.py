"""voxlake command line. Thin: the emulator's logic lives in voxlake.emulator."""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import json
import logging
import operator
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from voxlake.inputs import RunInputs
    from voxlake.request import RunRequest
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


@app.command("serve-local")
@_stops_on_interrupt("Interrupted: the local server stopped.")
def serve_local(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = (
        "127.0.0.1"
    ),
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accepted key (repeatable; each key is its own project). Also read from "
            "VOXLAKE_LOCAL_API_KEYS (comma-separated). None: the demo key is accepted.",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Account-wide concurrent jobs.")] = 5,
    processing_fixed: Annotated[float, typer.Option(help="Fixed seconds per job.")] = 0.5,
    processing_per_audio: Annotated[
        float, typer.Option(help="Extra seconds per second of audio.")
    ] = 0.0,
    rate_limit: Annotated[int, typer.Option(help="Requests per window, account-wide.")] = 20_000,
    rate_window: Annotated[float, typer.Option(help="Rate-limit window in seconds.")] = 300.0,
    upload_dir: Annotated[
        Path | None, typer.Option(help="Where uploads are stored (default: a temp dir).")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep uploads and jobs here, across restarts: a restarted server finishes the "
            "jobs it had accepted (default: in memory only)."
        ),
    ] = None,
    upload_ttl: Annotated[float, typer.Option(help="Seconds an upload URL stays valid.")] = (
        86_400.0
    ),
    max_upload_bytes: Annotated[int, typer.Option(help="Upload size limit.")] = 2_200_000_000,
    engine: Annotated[
        str,
        typer.Option(help="Transcription engine: auto (sphinx if installed), sphinx, scripted."),
    ] = "auto",
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="ROUTE:KNOB=VALUE[,KNOB=VALUE] (repeatable), e.g. 'transcript_get:p503=0.2'. "
            "Knobs: p429 p500 p503 p504 reset latency retry_after. ROUTE '*' = all.",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Fault RNG seed (or VOXLAKE_FAULT_SEED).")] = (
        None
    ),
    public_base_url: Annotated[
        str | None, typer.Option(help="Base URL put in upload and page URLs.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run the AssemblyAI-compatible local server until interrupted."""
    from voxlake.emulator import (
        DEFAULT_API_KEY,
        EmulatorConfig,
        FaultConfig,
        LocalServer,
        StateDirInUseError,
    )
    from voxlake.emulator.config import fault_seed_from_env, faults_from_env, parse_fault_flag
    from voxlake.errors import ConfigurationError
    from voxlake.settings import settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    keys = list(api_key or [])
    keys += settings().local_api_keys
    try:
        env_seed = fault_seed_from_env()
        faults = FaultConfig(seed=seed if seed is not None else env_seed or 0)
        faults = faults.merged(faults_from_env())
        for flag in fault or []:
            faults = faults.merged(parse_fault_flag(flag))
        config = EmulatorConfig(
            api_keys=keys,
            concurrency_limit=concurrency,
            processing_fixed_s=processing_fixed,
            processing_per_audio_s=processing_per_audio,
            rate_limit=rate_limit,
            rate_window_s=rate_window,
            upload_dir=upload_dir,
            state_dir=state_dir,
            upload_ttl_s=upload_ttl,
            max_upload_bytes=max_upload_bytes,
            engine=engine,
            faults=faults,
            public_base_url=public_base_url,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    log = logging.getLogger("voxlake.cli")
    if not keys:
        # The demo key is public by design (documented), so printing it leaks nothing.
        log.warning("no --api-key given: accepting the demo key %r", DEFAULT_API_KEY)
    server = LocalServer(config, host=host, port=port)
    with _exits_on_error():
        try:
            server.start()
        except StateDirInUseError as exc:  # the server's own error: the CLI translates it
            raise ConfigurationError(str(exc)) from None
    typer.echo(f"voxlake local server on {server.base_url}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
        kept = f"its jobs are kept in {state_dir}" if state_dir else "its jobs were in memory"
        typer.echo(f"Interrupted: the local server stopped; {kept}.", err=True)
        raise typer.Exit(130) from None
    finally:
        server.stop()


# --- voxlake run: its options from the run's request model ----------------------------------
#
# Every field of voxlake.request.RunRequest is on the command line in one of three ways, and
# tests/unit/test_request.py fails on a field that is in none of them:
#
# - _RUN_FIELD_OPTIONS: the option is the field itself: its name in kebab case, its type, its
#   help and its default, all from the model (the CLI only chooses the spelling and may give a
#   default of its own, as for --output);
# - _RUN_COMPOSED: the CLI's own options compose the field (--s3-* and --presign make ``s3``,
#   a JSON file's path gives ``price_table``); they are declared in _run_cli_options;
# - _RUN_NOT_ON_CLI: a deployment's parameter only, with the reason.

#: field -> (the option's names, the CLI's default if not the model's)
_RUN_FIELD_OPTIONS: dict[str, tuple[tuple[str, ...], Any]] = {
    "manifest": ((), ...),  # the argument
    "output": (("--output", "-o"), "output"),
    "chunk_size": ((), ...),
    "on_invalid": ((), ...),
    "fail_on_error": ((), ...),
    "max_uploads": ((), ...),
    "content_hash": ((), ...),
    "force": ((), ...),
    "retry_failed": ((), ...),
    "dry_run": ((), ...),
    "max_audio_hours": ((), ...),
    "report": ((), ...),
    "webhook_url": ((), ...),
    "webhook_auth_header_name": ((), ...),
    "webhook_auth_header_value_env": ((), ...),
    "webhook_safety_poll_s": ((), ...),
    "detach": ((), ...),
    "delete_after_collect": ((), ...),
    "captions": ((), ...),
    "chars_per_caption": ((), ...),
    "sentences": ((), ...),
    "paragraphs": ((), ...),
}
#: field -> the parameters of _run_cli_options that compose it
_RUN_COMPOSED: dict[str, tuple[str, ...]] = {
    "options": ("speech_model", "language_code", "speaker_labels", "option"),
    "s3": ("s3_endpoint_url", "s3_region", "s3_profile", "presign", "presign_expires"),
    "media_extensions": ("media_extensions",),
    "price_table": ("price_table",),
}
_RUN_NOT_ON_CLI = {
    # A CLI run keeps the default (6 h); one stopped with Ctrl-C resumes its jobs next time.
    "poll_timeout_s": "a deployment's tuning",
    # Set by the backfill parent for its shards.
    "lease_group": "a backfill's shards",
    # The CLI takes its keys from the environment (ASSEMBLYAI_API_KEY, the AWS chain); blocks
    # and the shared limit are a Prefect server's, which `voxlake serve` sets up.
    "credentials_block": "deployments name a saved block",
    "aws_credentials_block": "deployments name a saved block",
    "shared_budget": "deployments share a Prefect limit",
}
#: Not a field: how the CLI shows the run.
_RUN_CLI_ONLY = ("progress",)


def _run_cli_options(
    speech_model: Annotated[
        list[str] | None,
        typer.Option("--speech-model", help="Speech model(s) in priority order (repeatable)."),
    ] = None,
    language_code: Annotated[str | None, typer.Option(help="e.g. en_us; default: API's.")] = None,
    speaker_labels: Annotated[
        bool | None, typer.Option("--speaker-labels/--no-speaker-labels", help="Diarization.")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            metavar="NAME=VALUE",
            help="Any POST /v2/transcript option as the run's default, e.g. "
            "sentiment_analysis=true or speaker_options='{\"max_speakers_expected\": 3}' "
            "(VALUE is read as JSON when it is JSON, else as text; repeatable; "
            "docs/manifest.md lists the options). Manifest columns override it per row.",
        ),
    ] = None,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
    presign: Annotated[
        bool,
        typer.Option(
            help="Submit presigned S3 URLs as audio_url instead of uploading the bytes (the URL "
            "must outlive the job's queueing; see docs/s3.md)."
        ),
    ] = False,
    presign_expires: Annotated[
        int, typer.Option(help="Presigned URL lifetime in seconds (max 7 days).")
    ] = 24 * 3600,
    media_extensions: Annotated[
        str | None,
        typer.Option(help="Comma-separated extensions kept when listing a folder/prefix/glob."),
    ] = None,
    price_table: Annotated[
        str | None,
        typer.Option(help='JSON file of USD per audio hour by speech model: {"universal-2": 0.15}'),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """The options of ``voxlake run`` that are not a field of the request (see above)."""


def _without_constraints(annotation: Any) -> Any:
    """The field's type as typer takes it: no pydantic metadata, a ``Literal`` as ``str``
    (the model checks the value)."""
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _without_constraints(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return str
    if origin is list:  # a repeatable option
        return list[_without_constraints(typing.get_args(annotation)[0])]  # type: ignore[misc]
    if origin in (typing.Union, types.UnionType):
        args = [_without_constraints(arg) for arg in typing.get_args(annotation)]
        return functools.reduce(operator.or_, args)
    return annotation


def _run_signature() -> inspect.Signature:
    """``voxlake run``'s parameters: the request's fields in the model's order, each composed
    field's options in its place, then the CLI's own (see above)."""
    import dataclasses

    from voxlake.request import RunRequest

    own = {
        name: param.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for name, param in inspect.signature(_run_cli_options, eval_str=True).parameters.items()
    }
    params: list[inspect.Parameter] = []
    for field in dataclasses.fields(RunRequest):
        name, help_text = field.name, field.metadata["help"]
        if name in _RUN_FIELD_OPTIONS:
            decls, default = _RUN_FIELD_OPTIONS[name]
            info: Any
            if name == "manifest":
                info, default = typer.Argument(help=help_text), inspect.Parameter.empty
            else:
                info = typer.Option(*decls, help=help_text)
                default = field.default if default is ... else default
            annotation = Annotated[_without_constraints(field.type), info]  # type: ignore[valid-type]
            params.append(
                inspect.Parameter(
                    name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
                )
            )
        params += [own[option] for option in _RUN_COMPOSED.get(name, ())]
    params += [own[option] for option in _RUN_CLI_ONLY]
    return inspect.Signature(params)


@app.command("run")
# Before the flow starts nothing was sent; from then on voxlake.runner says what happened.
@_stops_on_interrupt("Interrupted before anything was submitted.")
def run(**given: Any) -> None:
    """Transcribe every item of MANIFEST into Parquet tables under --output.

    Uses AssemblyAI when ASSEMBLYAI_API_KEY is set (ASSEMBLYAI_REGION=eu or ASSEMBLYAI_BASE_URL
    to choose the endpoint), otherwise the embedded local server.
    """
    # Our own progress lines at INFO; libraries (httpx logs every request at INFO) stay quiet.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("voxlake").setLevel(logging.INFO)
    # Prefect's background senders (named after their class) warn "Still processing items: N
    # items remaining..." while they drain at the run's end: progress, not a problem, and
    # nothing a user can act on. Their real failures are errors and still show.
    for sender in ("EventsWorker", "APILogWorker"):
        logging.getLogger(sender).setLevel(logging.ERROR)
    fields = {name: given[name] for name in _RUN_FIELD_OPTIONS}
    # --captions srt,vtt or --captions srt --captions vtt: the model checks each format.
    captions = [f.strip() for value in given["captions"] or () for f in value.split(",")]
    fields["captions"] = [f for f in captions if f] or None
    options: dict[str, object] = {}
    if given["speech_model"]:
        options["speech_models"] = given["speech_model"]
    if given["language_code"] is not None:
        options["language_code"] = given["language_code"]
    if given["speaker_labels"] is not None:
        options["speaker_labels"] = given["speaker_labels"]
    options.update(_option_flags(given["option"] or [], options))
    s3 = _s3_flags(given["s3_endpoint_url"], given["s3_region"], given["s3_profile"])
    if given["presign"]:
        s3["presign"] = True
        s3["presign_expires_s"] = given["presign_expires"]
    extensions = [e for e in (given["media_extensions"] or "").split(",") if e.strip()] or None
    from voxlake.prefect_api import TemporaryPrefectAPI, quiet_prefect_defaults
    from voxlake.settings import settings

    environment = settings()  # read (and checked) by _main already: cached
    quiet_prefect_defaults()
    # Before the heavy imports: a temporary Prefect API, if this run needs one, boots meanwhile.
    with TemporaryPrefectAPI(environment.prefect_startup_timeout_s) as prefect_api:
        # Before any server is waited for or started: a bad input is one message, at once.
        inputs = _checked_inputs(
            fields["manifest"],
            options=options or None,
            on_invalid=fields["on_invalid"],
            media_extensions=extensions,
            s3=s3,
            content_hash=fields["content_hash"],
            max_audio_hours=fields["max_audio_hours"],
            price_table=given["price_table"],
        )
        # The values check_run_inputs has not looked at (--max-uploads 0): refused here.
        request = _run_request(
            {
                **fields,
                "options": options or None,
                "s3": inputs.s3,
                "media_extensions": extensions,
                "price_table": inputs.prices,
            }
        )
        if request.webhook_url or request.webhook_auth_header_value_env:
            from voxlake.run.notified import run_webhook

            with _exits_on_error():  # the flow reads it again; a missing secret is said now
                run_webhook(
                    request.webhook_url,
                    request.webhook_auth_header_name,
                    request.webhook_auth_header_value_env,
                    request.webhook_safety_poll_s,
                )
        with _imports_without_gc():
            from voxlake.estimate import Estimate
            from voxlake.flows import transcribe  # noqa: F401  Prefect: most of the start-up
            from voxlake.report import print_estimate, print_summary, voxlake_command
            from voxlake.runner import run_manifest

        with _exits_on_error():
            summary = run_manifest(
                request,
                prefect_api=prefect_api,
                inputs=inputs,
                progress=given["progress"],
                settings=environment,
            )
    if isinstance(summary, Estimate):
        print_estimate(summary)
        return
    # This very command with --retry-failed: what submits the items whose job failed again.
    retry = voxlake_command([*sys.argv[1:]] + ["--retry-failed"] * (not request.retry_failed))
    print_summary(summary, retry_command=retry)
    if summary.fatal or (request.fail_on_error and (summary.failed or summary.delete_failures)):
        raise typer.Exit(1)


run.__signature__ = _run_signature()  # type: ignore[attr-defined]


def _run_request(fields: dict[str, Any]) -> RunRequest:
    """The run's :class:`~voxlake.request.RunRequest`, or exit 2 with one line naming each
    option whose value it refused."""
    from pydantic import ValidationError

    from voxlake.request import RunRequest

    try:
        return RunRequest.validate(fields)
    except ValidationError as exc:
        problems = [
            f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg']}" for error in exc.errors()
        ]
        typer.echo(f"error: {'; '.join(problems)}", err=True)
        raise typer.Exit(2) from None


def _option_flags(flags: list[str], given: dict[str, object]) -> dict[str, object]:
    """``--option NAME=VALUE`` flags as options; checked as options by check_run_inputs."""
    options: dict[str, object] = {}
    for flag in flags:
        name, sep, text = flag.partition("=")
        name = name.strip()
        if not sep or not name:
            raise typer.BadParameter(
                f"{flag!r} is not NAME=VALUE; write e.g. --option sentiment_analysis=true",
                param_hint="--option",
            )
        if name in options or name in given:
            raise typer.BadParameter(f"{name} is given twice; keep one", param_hint="--option")
        try:
            # JSON when it is JSON (true, 3, 0.5, lists, objects), else the text itself.
            options[name] = json.loads(text)
        except ValueError:
            options[name] = text
    return options


def _checked_inputs(manifest: str, **checks: Any) -> RunInputs:
    """The run's inputs (voxlake.inputs.check_run_inputs), or exit 2 with one message.

    Runs before the embedded server starts and before the Prefect API is waited for: the
    temporary API's process, already booting, is stopped on the way out (TemporaryPrefectAPI).
    """
    with _imports_without_gc():
        from voxlake.inputs import check_run_inputs
    with _exits_on_error():
        return check_run_inputs(manifest, **checks)


@contextlib.contextmanager
def _imports_without_gc() -> Iterator[None]:
    """Import with the cyclic garbage collector off, then freeze what the imports made.

    Importing Prefect, the flow, pyarrow and pandas makes ~300,000 objects, and the collector's
    full passes over them during the imports took ~0.3 s of every run's start-up. Frozen
    (``gc.freeze``, public and documented), those objects also stay out of the collections
    during the run and out of the interpreter's last collections when it exits: without it,
    the exit of a one-clip ``voxlake run`` took 2.3-3.0 s longer on a loaded 2-core machine
    (benchmarks/RESULTS.md, B10). The imports' own garbage (~130,000 small objects, ~3 MB) is
    kept instead of collected. In a process that has imported Prefect already (a test, a
    notebook), the imports are cheap and that process's objects are not frozen.
    """
    if "prefect" in sys.modules or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


# --- analysts: voxlake query, voxlake report -----------------------------------------------


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


@app.command("query")
def query(
    output: Annotated[str, typer.Argument(help="Root of the Parquet tables (local or s3://).")],
    sql: Annotated[
        str | None,
        typer.Argument(
            help="SQL to run. None: statements are read from stdin, each ending with ';' "
            "(an interactive shell on a terminal)."
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="table, csv, json (JSON Lines) or parquet (to --out, or bytes to a "
            "redirected stdout).",
        ),
    ] = "table",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the result to this file, not stdout (its folder is created)."
        ),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows shown by --format table.")] = 100,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
) -> None:
    """Run SQL over the tables under OUTPUT with DuckDB, views predefined: transcripts, words,
    utterances and the speech-understanding tables (sentiment, entities, ...: every run), and
    <table>_current for each (one current outcome per media_id). Bad SQL: DuckDB's message on
    stderr, exit code 2."""
    import contextlib
    import io
    import sys

    from voxlake.lake.views import check_output_root, connect
    from voxlake.query import FORMATS, repl, run_statement, write_result

    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None and sys.stdout.isatty():
        typer.echo(
            "error: --format parquet writes bytes: give --out FILE or redirect stdout", err=True
        )
        raise typer.Exit(2)
    try:
        check_output_root(output, s3=s3)  # a misspelled folder is an error, not an empty result
        con = connect(output, s3=s3)
    except Exception as exc:  # also Arrow's and DuckDB's (unreadable files, missing bucket)
        raise _fail(exc) from None
    with con, contextlib.ExitStack() as stack:
        if out is None:
            text, binary = sys.stdout, sys.stdout.buffer
        else:
            # Created like `voxlake report --out`'s: an export folder is asked for, not a typo
            # (the root, which may be mistyped, has been checked above).
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                binary = stack.enter_context(out.open("wb"))
            except OSError as exc:
                typer.echo(f"error: --out {out}: {exc.strerror or exc}", err=True)
                raise typer.Exit(2) from None
            text = stack.enter_context(io.TextIOWrapper(binary, encoding="utf-8", newline=""))
        if sql is None:
            failures = repl(
                con,
                sys.stdin,
                fmt=fmt,
                out=text,
                err=sys.stderr,
                prompt=sys.stdin.isatty(),
                binary=binary,
                max_rows=max_rows,
            )
            if failures:
                raise typer.Exit(2)
            return
        with _exits_on_error():
            rel = run_statement(con, sql)
            if rel is not None:
                write_result(rel, fmt, text=text, binary=binary, max_rows=max_rows)


@app.command("report")
def report(
    output: Annotated[str, typer.Argument(help="Root of the Parquet tables (local or s3://).")],
    run_id: Annotated[
        str | None,
        typer.Option(
            help="One flow run (flow_run_id). Default: every item's current outcome "
            "(transcripts_current)."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="First run_date to include (YYYY-MM-DD); a date range.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last run_date to include (YYYY-MM-DD); a date range.")
    ] = None,
    word_threshold: Annotated[
        float, typer.Option(help="Words below this confidence count as unsure.")
    ] = 0.5,
    references: Annotated[
        Path | None,
        typer.Option(
            help="Manifest (CSV) with media_id and a 'reference' column, or a 'source' column "
            "whose clips have a <clip>.ref.txt beside them: adds word error rates."
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Where to write the HTML (default OUTPUT/report.html)."),
    ] = None,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
) -> None:
    """Write a self-contained HTML report (inline charts, no network): every item's current
    outcome under OUTPUT, or one run (--run-id), or the runs of a date range."""
    from voxlake.analytics_report import write_report

    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)
    with _exits_on_error():
        path = write_report(
            output,
            s3=s3,
            out=out,
            run_id=run_id,
            since=since,
            until=until,
            word_threshold=word_threshold,
            references=references,
        )
    typer.echo(path)


@app.command("purge")
@_stops_on_interrupt("Interrupted: the transcripts deleted so far are recorded; run it again.")
def purge(
    output: Annotated[str, typer.Argument(help="Root of the Parquet tables (local or s3://).")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Delete them (without it: only list what would go).")
    ] = False,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
) -> None:
    """Delete at AssemblyAI every transcript OUTPUT's ledger knows is still held there (its
    rows stay in the tables). Lists them first: nothing is deleted without --yes. Uses
    ASSEMBLYAI_API_KEY (and ASSEMBLYAI_BASE_URL / ASSEMBLYAI_REGION), like voxlake run."""
    from voxlake.lake.views import check_output_root
    from voxlake.purge import purge as purge_output

    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)
    with _exits_on_error():
        check_output_root(output, s3=s3)  # a misspelled folder is an error, not "0 held"
        result = purge_output(output, yes=yes, s3=s3)
    held = result.held

    def transcripts(n: int) -> str:
        return f"{n} transcript" + ("" if n == 1 else "s")

    flying = (
        f" ({held.in_flight} jobs still in flight are left alone: a run collects them first)"
        if held.in_flight
        else ""
    )
    if not held.transcripts:
        typer.echo(
            f"Nothing to purge: 0 transcripts held at AssemblyAI ({held.deleted} deleted "
            f"already){flying}."
        )
        return
    if not yes:
        typer.echo(f"Would delete {transcripts(len(held.transcripts))} held at AssemblyAI{flying}:")
        for h in held.transcripts:
            typer.echo(f"  {h.item.media_id}\t{h.transcript_id}")
        typer.echo("Nothing was deleted: run again with --yes to delete them.")
        return
    typer.echo(f"Deleted {transcripts(result.deleted)} at AssemblyAI{flying}.")
    for f in result.failures:
        typer.echo(f"not deleted: {f.media_id} {f.transcript_id}: {f.error}", err=True)
    if result.failures:
        typer.echo(
            f"{transcripts(len(result.failures))} could not be deleted and are still held: "
            "run voxlake purge again.",
            err=True,
        )
        raise typer.Exit(1)


@app.command("serve")
@_stops_on_interrupt("Interrupted: voxlake serve stopped its worker and Prefect server.")
def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Interface for the Prefect server it starts; other than loopback needs "
            "PREFECT_SERVER_API_AUTH_STRING."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the Prefect server it starts.")] = 4200,
    home: Annotated[
        Path, typer.Option(help="Folder of the Prefect server's database (kept across runs).")
    ] = Path(".voxlake/prefect"),
    pool: Annotated[str, typer.Option(help="Process work pool of the deployments.")] = "voxlake",
    worker: Annotated[bool, typer.Option(help="Start a worker on the pool.")] = True,
    local_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--local-arg",
            help="An argument for the embedded 'voxlake serve-local' started when no "
            "ASSEMBLYAI_API_KEY is set (repeatable), e.g. --local-arg=--engine=scripted.",
        ),
    ] = None,
    database: Annotated[
        str,
        typer.Option(
            help="Database of the Prefect server it starts: sqlite (in --home), or postgresql "
            "(PREFECT_API_DATABASE_CONNECTION_URL, else one started with its files in "
            ".voxlake/postgres; for concurrent runs and many workers, docs/operations.md).",
        ),
    ] = "sqlite",
) -> None:
    """Prefect server (or the configured PREFECT_API_URL), work pool, shared request limit,
    blocks, deployments/prefect.yaml and a worker: scheduled runs and backfills on one machine.
    With no ASSEMBLYAI_API_KEY, the deployments use an embedded local server started beside.
    """
    from voxlake import serve as serving

    with _exits_on_error():
        serving.serve(
            host=host,
            port=port,
            home=home,
            pool=pool,
            worker=worker,
            local_args=local_arg or (),
            database=database,
            say=typer.echo,
        )


@app.command("webhooks")
@_stops_on_interrupt("Interrupted: the webhook receiver stopped.")
def webhooks(
    output: Annotated[
        str, typer.Argument(help="Root of the run's output (local or s3://): where it records.")
    ],
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8766,
    auth_header_name: Annotated[
        str, typer.Option(help="The webhook_auth_header_name the jobs are submitted with.")
    ] = "X-Voxlake-Webhook-Auth",
    auth_header_value_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the webhook_auth_header_value (never a plain "
            "argument: it would show in ps). None: asked for on the terminal."
        ),
    ] = None,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Receive AssemblyAI's webhook notifications (POST /voxlake/webhook) until interrupted,
    recording each under OUTPUT/_webhooks/notifications/ (docs/webhooks.md)."""
    import socket

    import uvicorn

    from voxlake import webhooks as receiver

    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)
    with _exits_on_error():
        if auth_header_value_env is not None:
            auth = receiver.auth_from_env(auth_header_name, auth_header_value_env)
        elif sys.stdin.isatty():
            value = typer.prompt(f"{auth_header_name} value", hide_input=True, err=True)
            auth = receiver.checked_auth(auth_header_name, value, where="the value typed")
        else:
            raise typer.BadParameter("give --auth-header-value-env VAR (no terminal to ask on)")
        store = receiver.NotificationStore(output, s3=s3)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # Bound here, before uvicorn starts: --port 0 gives a port to print, and requests that
    # arrive before uvicorn is up wait in the listen backlog instead of being refused.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _fail(OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")) from None
    sock.listen(512)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"voxlake webhook receiver on http://{shown}:{bound}{receiver.WEBHOOK_PATH}", err=True
    )
    config = uvicorn.Config(
        receiver.create_app(store, auth), log_config=None, timeout_graceful_shutdown=5
    )
    # uvicorn handles Ctrl-C itself (finishing the requests being recorded), then raises
    # SIGINT again: the KeyboardInterrupt that ends the command with status 130.
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


# --- voxlake recollect: rows of new or changed tables, without paying again --------------------


@app.command("recollect")
@_stops_on_interrupt(
    "Interrupted: the rows written so far are kept; run the same command again to finish."
)
def recollect(
    output: Annotated[str, typer.Argument(help="Root of the Parquet tables (local or s3://).")],
    dry_run: Annotated[
        bool, typer.Option(help="Say how many transcripts would be fetched; fetch nothing.")
    ] = False,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
) -> None:
    """Fetch completed transcripts again by id (GET only: nothing is submitted or paid again)
    and write the rows of the tables they lack: tables added to voxlake after they were
    collected, or whose version changed (docs/ledger.md, "Re-collecting").

    Uses AssemblyAI when ASSEMBLYAI_API_KEY is set (ASSEMBLYAI_BASE_URL for another endpoint),
    otherwise the embedded local server that runs into OUTPUT used.
    """
    import asyncio

    from voxlake.client import AssemblyAIClient
    from voxlake.run.recollect import recollect as recollect_root
    from voxlake.settings import settings

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("voxlake").setLevel(logging.INFO)
    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)
    with _exits_on_error():
        from voxlake.lake.views import check_output_root

        check_output_root(output, s3=s3)  # a misspelled root: one line, before any server starts
        if dry_run:
            summary = asyncio.run(recollect_root(output, client=None, s3=s3, dry_run=True))
        else:
            from voxlake.runner import api_backend

            with api_backend(output, engine=settings().engine) as credentials:

                async def fetch_all() -> Any:
                    client = credentials.get_client() if credentials else AssemblyAIClient()
                    async with client:
                        return await recollect_root(output, client=client, s3=s3)

                summary = asyncio.run(fetch_all())
    for line in summary_lines(summary):
        typer.echo(line)
    if summary.failed:
        raise typer.Exit(1)


def summary_lines(summary: Any) -> list[str]:
    """What ``voxlake recollect`` prints: a ``voxlake.run.recollect.RecollectSummary``."""
    stale = ", ".join(f"{name} ({n})" for name, n in sorted(summary.stale_by_table.items()))
    lines = []
    if summary.dry_run:
        lines.append(
            f"{summary.due} transcripts would be fetched again (GET only, nothing submitted)"
            + (f"; stale tables: {stale}" if stale else "")
        )
    elif not summary.due:
        lines.append(
            "Nothing to recollect: every completed item's rows are at the current table "
            "versions; 0 AssemblyAI requests"
        )
    else:
        lines.append(
            f"Recollected {summary.written} of {summary.due} transcripts: "
            f"{summary.requests} AssemblyAI requests (GET only, 0 submissions)"
            + (f"; stale tables: {stale}" if stale else "")
        )
    if summary.gone:
        lines.append(
            f"{len(summary.gone)} transcripts can no longer be fetched (deleted at AssemblyAI); "
            f"recorded as deleted, not fetched again: {', '.join(summary.gone)}"
        )
    if summary.deleted_before:
        lines.append(f"{summary.deleted_before} items were recorded as deleted before: skipped")
    for media_id, why in summary.failed:
        lines.append(f"not recollected: {media_id}: {why}")
    if summary.failed:
        lines.append(f"{len(summary.failed)} items not recollected: run the same command again")
    return lines


def main() -> None:
    """The ``voxlake`` command (console script and ``python -m voxlake.cli``).

    Ctrl-C (SIGINT) interrupts every command, even one started with SIGINT ignored, as a
    non-interactive shell starts its background jobs: Python then installs no handler, and
    ``voxlake serve`` ran on after ``kill -INT`` until it was killed.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Arrow's allocator for this process and the ones it starts (a served flow run's), chosen
    # before anything imports pyarrow: its default here (mimalloc) keeps what it frees, and a
    # 100,000-item ledger lookup peaked ~50 MB higher with it, no faster (docs/ledger.md).
    # Here, not at import: a notebook that imports voxlake keeps its own allocator. A value
    # the user set still chooses.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    app()

