"""One run's request: every parameter of a transcription run, declared once.

:class:`RunRequest` holds each parameter's type, default, constraint and help text. The rest
follows from it:

- the flow :func:`voxlake.flows.transcribe.transcribe_manifest` takes these fields as its
  parameters, with the constrained types below (:data:`ChunkSize` …), so Prefect validates a
  call and a deployment's parameters against the same constraints, and its parameter schema
  shows the help texts (:func:`documented_by` writes them into the flow's docstring, where
  Prefect reads parameter descriptions). ``tests/unit/test_request.py`` fails when the flow's
  parameters and this model differ in a name, a type or a default;
- ``voxlake run`` builds its options from the fields (:mod:`voxlake.cli.run`), each with the
  field's help and default, and validates what it was given with this model;
- the backfill passes each shard its parameters as a validated :class:`RunRequest`, and the
  test validates every deployment's parameters in ``deployments/prefect.yaml`` with it.

The flow keeps its own explicit signature instead of one generated from the model: a call
from Python (``transcribe_manifest(manifest=..., output=..., options=...)``) is then checked
by mypy and read by an IDE like any function's, and Prefect builds its parameter schema from a
plain signature in a worker's process, with no model in between to get out of step.

A plain dataclass, validated by pydantic on demand (:meth:`RunRequest.validate`), with its
constraints as ``annotated_types`` metadata that pydantic enforces: the CLI builds ``voxlake
run``'s options from it at start-up, and importing pydantic there (~0.2 s) would delay every
``voxlake run`` and ``voxlake --version``.

``options`` is the AssemblyAI transcript options every item gets unless its manifest row says
otherwise (:class:`voxlake.manifest.TranscriptionOptions`'s fields).
"""

# No `from __future__ import annotations`: the flow's signature uses these aliases, and Prefect
# resolves its hints in a worker's process, where postponed (string) hints have failed.
import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from annotated_types import Ge, Gt, Predicate

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from voxlake.storage import S3Options

#: Items per Prefect task run; None: automatic.
ChunkSize = Annotated[int, Ge(1)]
#: Concurrent uploads.
MaxUploads = Annotated[int, Ge(1)]
#: Seconds a job may take from submit to its end; None: no limit.
PollTimeout = Annotated[float, Gt(0)]
#: Audio hours a run may submit.
AudioHours = Annotated[float, Gt(0), Predicate(math.isfinite)]
OnInvalid = Literal["fail", "skip"]
#: Seconds a job in webhook mode waits for its notification before the safety-net poll.
SafetyPoll = Annotated[float, Gt(0), Predicate(math.isfinite)]
#: A caption file format (AssemblyAI's SubtitleFormat).
CaptionFormat = Literal["srt", "vtt"]
#: Most characters in one caption.
CharsPerCaption = Annotated[int, Ge(1)]

DEFAULT_POLL_TIMEOUT_S = 6 * 3600.0
DEFAULT_WEBHOOK_HEADER = "X-Voxlake-Webhook-Auth"
DEFAULT_WEBHOOK_SAFETY_POLL_S = 60.0
#: Where the webhook receiver listens by default (voxlake webhooks, voxlake serve --webhooks).
DEFAULT_RECEIVER_PORT = 8766


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunRequest:
    """The parameters of one transcription run (see the module doc); ``help`` in each field's
    metadata is its help text."""

    # pydantic's config for a plain dataclass (what pydantic.with_config sets): a misspelled
    # parameter is an error, not ignored.
    __pydantic_config__ = {"extra": "forbid"}

    manifest: str = field(
        metadata=_help(
            "A media file, a folder of media, a glob, or a CSV / JSONL / Parquet manifest; "
            "local or s3://bucket/... (an object, a prefix, or a glob)."
        )
    )
    output: str = field(metadata=_help("Root of the Parquet tables (local or s3://)."))
    options: dict[str, Any] | None = field(
        default=None,
        metadata=_help(
            "AssemblyAI transcript options for every item, unless its manifest row says "
            "otherwise (speech_models, language_code, speaker_labels, ...).",
        ),
    )
    chunk_size: ChunkSize | None = field(
        default=None, metadata=_help("Items per Prefect task run (default: automatic).")
    )
    on_invalid: OnInvalid = field(
        default="fail",
        metadata=_help("'fail': stop on any bad manifest row; 'skip': record and go on."),
    )
    fail_on_error: bool = field(
        default=False, metadata=_help("Exit non-zero (and fail the flow run) if any item failed.")
    )
    max_uploads: MaxUploads = field(default=16, metadata=_help("Concurrent uploads."))
    poll_timeout_s: PollTimeout | None = field(
        default=DEFAULT_POLL_TIMEOUT_S,
        metadata=_help(
            "Seconds a job may take from its submit to its end before the run gives it up "
            "(None: no limit).",
        ),
    )
    # A string: S3Options is a pydantic model, imported only where the request is validated.
    s3: "S3Options | None" = field(
        default=None,
        metadata=_help(
            "Non-secret S3 options: endpoint_url, region, profile, presign, "
            "presign_expires_s, max_attempts (docs/s3.md).",
        ),
    )
    media_extensions: list[str] | None = field(
        default=None, metadata=_help("Extensions kept when listing a folder/prefix/glob.")
    )
    content_hash: bool = field(
        default=False, metadata=_help("Add a sha256 of local files to source_fingerprint.")
    )
    force: bool = field(
        default=False,
        metadata=_help("Submit every item again, even those already done (pays again)."),
    )
    retry_failed: bool = field(
        default=False, metadata=_help("Submit again the items whose AssemblyAI job failed before.")
    )
    dry_run: bool = field(
        default=False,
        metadata=_help(
            "Send nothing, write nothing: report what would be submitted, its audio hours "
            "and estimated cost.",
        ),
    )
    max_audio_hours: AudioHours | None = field(
        default=None,
        metadata=_help(
            "Audio hours (from the media headers, more than 0) this run may submit: items "
            "are admitted in manifest order while they fit; the rest wait for the next run.",
        ),
    )
    price_table: dict[str, float] | None = field(
        default=None,
        metadata=_help('USD per audio hour by speech model, e.g. {"universal-2": 0.15}.'),
    )
    lease_group: str | None = field(
        default=None,
        metadata=_help(
            "Runs of one lease group share the output root's lease (a backfill's shards).",
        ),
    )
    report: bool = field(
        default=True, metadata=_help("Write the run's HTML report to OUTPUT/reports/<run id>.html.")
    )
    delete_after_collect: bool = field(
        default=False,
        metadata=_help(
            "Delete each transcript at AssemblyAI once its rows are committed (recorded in "
            "the ledger; a rerun finishes deletions a crash interrupted; docs/ledger.md).",
        ),
    )
    credentials_block: str | None = field(
        default=None,
        metadata=_help(
            "Saved AssemblyAICredentials block with the key (default: ASSEMBLYAI_API_KEY in "
            "the environment).",
        ),
    )
    aws_credentials_block: str | None = field(
        default=None,
        metadata=_help(
            "Saved prefect-aws AwsCredentials block (default: the AWS credential chain).",
        ),
    )
    shared_budget: str | None = field(
        default=None,
        metadata=_help(
            "Prefect global concurrency limit through which concurrent runs share "
            "AssemblyAI's request budget (docs/operations.md).",
        ),
    )
    webhook_url: str | None = field(
        default=None,
        metadata=_help(
            "Webhook mode: every job is submitted with this webhook_url (the receiver's, "
            "voxlake webhooks, recording under this output) and the run waits on its "
            "notifications instead of polling (docs/webhooks.md).",
        ),
    )
    webhook_auth_header_name: str = field(
        default=DEFAULT_WEBHOOK_HEADER,
        metadata=_help("The webhook_auth_header_name the jobs are submitted with."),
    )
    # The name of a variable, not the secret: a parameter is recorded by Prefect and shown in
    # `ps`; the value is read from the environment of the process that runs the flow.
    webhook_auth_header_value_env: str | None = field(
        default=None,
        metadata=_help(
            "Environment variable holding the webhook_auth_header_value (required with "
            "webhook_url; never the value itself).",
        ),
    )
    # A block's name, not the secret, as above: for deployments, whose workers' environment
    # is not the operator's to set per run.
    webhook_auth_header_value_secret: str | None = field(
        default=None,
        metadata=_help(
            "Name of a saved Prefect Secret block holding the webhook_auth_header_value "
            "(deployments; instead of webhook_auth_header_value_env).",
        ),
    )
    webhook_safety_poll_s: SafetyPoll = field(
        default=DEFAULT_WEBHOOK_SAFETY_POLL_S,
        metadata=_help(
            "Webhook mode: seconds a job waits for its notification before a slow status poll "
            "looks for it (the safety net for a lost notification), and between such polls.",
        ),
    )
    detach: bool = field(
        default=False,
        metadata=_help(
            "Submit and return without waiting for the jobs: the next run collects them "
            "(without paying again).",
        ),
    )
    captions: list[CaptionFormat] | None = field(
        default=None,
        metadata=_help(
            "Caption files to write for each completed item, srt and/or vtt (comma-separated), "
            "under OUTPUT/captions/ (docs/tables.md); one request per format and item.",
        ),
    )
    chars_per_caption: CharsPerCaption | None = field(
        default=None,
        metadata=_help("Most characters in one caption (default: AssemblyAI's)."),
    )
    sentences: bool = field(
        default=False,
        metadata=_help(
            "Fetch each completed transcript's sentences into the sentences table (one "
            "request per item).",
        ),
    )
    paragraphs: bool = field(
        default=False,
        metadata=_help(
            "Fetch each completed transcript's paragraphs into the paragraphs table (one "
            "request per item).",
        ),
    )

    @classmethod
    def of(cls, parameters: Mapping[str, Any]) -> "RunRequest":
        """The request from a flow's parameters, already checked (extra names ignored)."""
        return cls(**{f.name: parameters[f.name] for f in dataclasses.fields(cls)})

    @classmethod
    def validate(cls, values: Mapping[str, Any]) -> "RunRequest":
        """The request for ``values`` (JSON forms accepted: ``s3`` as a dict); raises
        ``pydantic.ValidationError`` naming each refused field."""
        return _adapter().validate_python(dict(values))

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The request's JSON schema (as a deployment's parameter schema is)."""
        return _adapter().json_schema()

    def flow_parameters(self) -> dict[str, Any]:
        """The fields as the flow's keyword arguments (``s3`` stays an ``S3Options``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@functools.cache
def _adapter() -> "TypeAdapter[RunRequest]":
    from pydantic import TypeAdapter

    # The "s3" field's hint names S3Options: pydantic resolves it in this frame's namespace.
    from voxlake.storage import S3Options  # noqa: F401

    return TypeAdapter(RunRequest)


_F = TypeVar("_F", bound=Callable[..., Any])


def documented_by(model: type[Any]) -> Callable[[_F], _F]:
    """Append an ``Args:`` section with a dataclass's help texts to a function's docstring.

    Prefect reads parameter descriptions from the docstring's ``Args:`` section (Google style)
    into the parameter schema a deployment's UI shows; applied below ``@flow``, the flow's
    parameters are described by the request's help texts, not by a second copy of them.
    """

    def document(fn: _F) -> _F:
        names = inspect.signature(fn).parameters
        lines = [
            f"    {f.name}: {f.metadata['help']}"
            for f in dataclasses.fields(model)
            if f.name in names and "help" in f.metadata
        ]
        fn.__doc__ = inspect.cleandoc(fn.__doc__ or "") + "\n\nArgs:\n" + "\n".join(lines) + "\n"
        return fn

    return document
