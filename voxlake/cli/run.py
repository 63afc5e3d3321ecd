"""``voxlake run``: its options generated from the run's request model (voxlake.request)."""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import json
import logging
import operator
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from voxlake.cli.common import (
    S3EndpointUrl,
    S3Profile,
    S3Region,
    _exits_on_error,
    _s3_flags,
    _stops_on_interrupt,
    app,
)

if TYPE_CHECKING:
    from voxlake.inputs import RunInputs
    from voxlake.request import RunRequest

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
    "webhook_auth_header_value_secret": "deployments name a saved Secret block",
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
# Before the job starts nothing was sent; from then on voxlake.runner says what happened.
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
    from voxlake.prefect_api import configured, quiet_prefect_defaults
    from voxlake.settings import settings

    environment = settings()  # read (and checked) by _main already: cached
    # Before any server is started: a bad input is one message, at once.
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

        with _exits_on_error():  # the job reads it again; a missing secret is said now
            run_webhook(
                request.webhook_url,
                request.webhook_auth_header_name,
                request.webhook_auth_header_value_env,
                request.webhook_safety_poll_s,
            )
    if not request.dry_run:
        from voxlake.runner import warm_embedded_engine

        warm_embedded_engine(environment.engine)
    with _imports_without_gc():
        if configured():  # the job runs as a Prefect flow: most of the start-up is Prefect's
            quiet_prefect_defaults()
            from voxlake.flows import transcribe  # noqa: F401
        from voxlake.estimate import Estimate
        from voxlake.report import print_estimate, print_summary, voxlake_command
        from voxlake.run import job  # noqa: F401
        from voxlake.runner import run_manifest

    with _exits_on_error():
        summary = run_manifest(
            request, inputs=inputs, progress=given["progress"], settings=environment
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

    Runs before the embedded server starts or Prefect is imported.
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
