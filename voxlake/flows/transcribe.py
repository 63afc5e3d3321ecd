"""The main job as a Prefect flow: a manifest of media in, Parquet tables of transcripts and
words out.

Orchestration only: the job is :func:`voxlake.run.job.transcribe`, and the work is in
:mod:`voxlake.run`. The flow runs each chunk's stage as a Prefect task (a small manifest gets
one task run per item and stage), reads the blocks and secrets its parameters name, and shows
the outcome as the flow run's artifacts and state.

Incremental: the run plans every item against the output root's ledger (voxlake.lake.ledger) first;
items already done cost nothing, jobs an interrupted run left in flight are resumed.

Retries: the tasks declare the job's stage retries (:func:`voxlake.run.job.worth_retrying`),
which cover only what the client's RetryPolicy has not retried, so the two layers never multiply.
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the
# signature in another process (deployments, flow.serve), where postponed hints such as
# Literal[...] could not be resolved ("model is not fully defined").
import logging
from typing import Any

from prefect import State, flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from pydantic.json_schema import SkipJsonSchema

from voxlake.credentials import (
    AssemblyAICredentials,
    assemblyai_client,
    aws_s3_credentials,
    read_secret_block,
)
from voxlake.errors import ConfigurationError, VoxlakeError
from voxlake.estimate import Estimate
from voxlake.flows.progress import ProgressArtifact
from voxlake.report import dry_run_markdown, summary_markdown, summary_table
from voxlake.request import (
    DEFAULT_POLL_TIMEOUT_S,
    DEFAULT_WEBHOOK_HEADER,
    DEFAULT_WEBHOOK_SAFETY_POLL_S,
    AudioHours,
    CaptionFormat,
    CharsPerCaption,
    ChunkSize,
    MaxUploads,
    OnInvalid,
    PollTimeout,
    RunRequest,
    SafetyPoll,
    documented_by,
)
from voxlake.run.job import (
    STAGE_RETRY_DELAYS_S,
    STAGE_RETRY_JITTER,
    Host,
    JobEnds,
    Stages,
    transcribe,
    worth_retrying,
)
from voxlake.run.progress import ProgressCallback
from voxlake.run.transcription import TranscriptionRun
from voxlake.settings import settings as read_settings
from voxlake.shared_budget import account_figures, shared_request_budget
from voxlake.storage import S3Options, use_s3_credentials

TASK_RETRIES = len(STAGE_RETRY_DELAYS_S)


class _ToRunLogs(APILogHandler):
    """voxlake's own log records (an item's failure, a job adopted from an interrupted run) go to
    the logs of the flow or task run they happen in, which Prefect's UI shows. Without it they
    reached only the console of the process that ran the flow (a worker's). Records outside any
    run (the CLI starting its servers) stay on the console: Prefect's handler would warn that it
    has no run to send them to.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            super().emit(record)


# Once per process, and not where the user already routes "voxlake" to Prefect
# (PREFECT_LOGGING_EXTRA_LOGGERS=voxlake): each record would be sent twice.
_voxlake_logger = logging.getLogger("voxlake")
if not any(isinstance(h, APILogHandler) for h in _voxlake_logger.handlers):
    _voxlake_logger.addHandler(_ToRunLogs())


def retry_if_not_yet_retried(task: Any, task_run: TaskRun, state: State) -> bool:
    """Retry transient failures the client has not already retried; never terminal ones.

    A plain function on purpose: Prefect 3.8 only calls plain functions or coroutine functions
    here (a partial or callable object silently disables retries).
    """
    exc = state.data if isinstance(state.data, BaseException) else None
    if exc is None:
        try:
            state.result(raise_on_failure=True)
        except BaseException as raised:
            exc = raised
    return exc is not None and worth_retrying(exc)


TASK_OPTIONS: dict[str, Any] = {
    "retries": TASK_RETRIES,
    "retry_delay_seconds": list(STAGE_RETRY_DELAYS_S),
    "retry_jitter_factor": STAGE_RETRY_JITTER,
    "retry_condition_fn": retry_if_not_yet_retried,
    # Tasks return media ids; transcripts never pass through Prefect results.
    "persist_result": False,
    "cache_policy": NO_CACHE,
}


@task(name="upload", **TASK_OPTIONS)
async def upload_media(run: TranscriptionRun, media_ids: list[str]) -> list[str]:
    return await run.upload(media_ids)


@task(name="submit", **TASK_OPTIONS)
async def submit_transcripts(run: TranscriptionRun, media_ids: list[str]) -> list[str]:
    return await run.submit(media_ids)


@task(name="poll", **TASK_OPTIONS)
async def poll_transcripts(run: TranscriptionRun, media_ids: list[str]) -> list[str]:
    return await run.wait(media_ids)


@task(name="collect", **TASK_OPTIONS)
async def collect_transcripts(run: TranscriptionRun, media_ids: list[str]) -> int:
    return await run.collect(media_ids)


#: The job's stages as this flow's tasks.
STAGE_TASKS: Stages = {
    "upload": upload_media,
    "submit": submit_transcripts,
    "poll": poll_transcripts,
    "write": collect_transcripts,
}


@flow(name="transcribe-manifest", persist_result=False)
@documented_by(RunRequest)
async def transcribe_manifest(
    # RunRequest's fields, in its order, with its types and defaults (tests/unit/test_request.py).
    manifest: str,
    output: str,
    options: dict[str, Any] | None = None,
    chunk_size: ChunkSize | None = None,
    on_invalid: OnInvalid = "fail",
    fail_on_error: bool = False,
    max_uploads: MaxUploads = 16,
    poll_timeout_s: PollTimeout | None = DEFAULT_POLL_TIMEOUT_S,
    s3: S3Options | None = None,
    media_extensions: list[str] | None = None,
    content_hash: bool = False,
    force: bool = False,
    retry_failed: bool = False,
    dry_run: bool = False,
    max_audio_hours: AudioHours | None = None,
    price_table: dict[str, float] | None = None,
    lease_group: str | None = None,
    report: bool = True,
    delete_after_collect: bool = False,
    credentials_block: str | None = None,
    aws_credentials_block: str | None = None,
    shared_budget: str | None = None,
    webhook_url: str | None = None,
    webhook_auth_header_name: str = DEFAULT_WEBHOOK_HEADER,
    webhook_auth_header_value_env: str | None = None,
    webhook_auth_header_value_secret: str | None = None,
    webhook_safety_poll_s: SafetyPoll = DEFAULT_WEBHOOK_SAFETY_POLL_S,
    detach: bool = False,
    captions: list[CaptionFormat] | None = None,
    chars_per_caption: CharsPerCaption | None = None,
    sentences: bool = False,
    paragraphs: bool = False,
    # For callers in this process only (voxlake run, scripts): left out of the parameter
    # schema, so deployments neither show nor take them. A callable has no JSON form, and a
    # deployment names a saved block instead of carrying a key.
    credentials: SkipJsonSchema[AssemblyAICredentials | None] = None,
    on_progress: SkipJsonSchema[ProgressCallback | None] = None,
    job_ends: SkipJsonSchema[JobEnds | None] = None,
) -> State:
    """Transcribe every item of ``manifest`` and write Parquet tables under ``output``.

    Incremental (docs/ledger.md): items already completed under ``output`` are skipped, jobs an
    interrupted run left in flight are resumed. With ``webhook_url`` the jobs are submitted with
    it and the auth header whose value is in the environment variable
    ``webhook_auth_header_value_env`` (or in the Prefect Secret block
    ``webhook_auth_header_value_secret`` names), and the run waits on the notifications the receiver
    records under ``output`` instead of polling (docs/webhooks.md); ``detach`` submits and
    returns, leaving the jobs for a later run to collect. ``force`` submits everything again,
    ``retry_failed`` resubmits items whose job failed before. ``dry_run`` sends no request and
    writes nothing: it reports what would be submitted, its audio hours and estimated cost
    (``price_table`` overrides list prices, USD per hour by speech model). ``max_audio_hours``
    (more than 0) admits, in manifest order, each item that still fits that much audio; the
    rest is recorded as deferred for the next run.
    ``lease_group`` lets the shards of one backfill share the output root. With ``report`` the
    run writes its HTML report beside the tables (``<output>/reports/<run id>.html``) and names
    it in its summary (a markdown artifact cannot hold the report's images).
    ``delete_after_collect`` deletes each transcript at AssemblyAI once its rows are committed
    (docs/ledger.md, "Deleting transcripts at AssemblyAI").

    Secrets never reach Prefect's database. The AssemblyAI key comes from ``credentials``, an
    ``AssemblyAICredentials`` given in this process (Prefect records it with the key masked),
    else from the saved block ``credentials_block`` names, else from ``ASSEMBLYAI_API_KEY`` and
    ``ASSEMBLYAI_BASE_URL`` / ``ASSEMBLYAI_REGION`` in the environment. AWS credentials come
    from the prefect-aws ``AwsCredentials`` block ``aws_credentials_block`` names, else the AWS
    credential chain. ``shared_budget`` names the Prefect global concurrency limit that
    concurrent runs share AssemblyAI's request budget through (docs/operations.md); without it
    the run keeps its own budget.

    ``on_progress`` hears the run's progress, a ``voxlake.run.progress.Progress(stage, done,
    total)`` each time items pass a stage; the flow run shows it as the progress artifact
    ``voxlake-run-progress``. ``job_ends`` subscribes to a server in this process that says
    when its jobs end (:data:`voxlake.run.job.JobEnds`: the embedded one), so the run polls then
    rather than on its schedule. ``credentials``, ``on_progress`` and ``job_ends`` are for
    callers in this process, such as ``voxlake run``: no deployment parameters.

    ``manifest`` and ``output`` may be ``s3://`` URLs, and manifests may list ``s3://`` media;
    ``s3`` holds the non-secret S3 options (endpoint_url, region, profile, presign; docs/s3.md).
    """
    request = RunRequest.of(locals())
    logger = get_run_logger()
    try:
        # The flow's edge: voxlake's environment (VOXLAKE_*) is read here, once, and what the run
        # needs of it is passed down. A bad value is the run's one error message.
        environment = read_settings()
        if credentials is not None and credentials_block is not None:
            raise ConfigurationError("give credentials or credentials_block, not both")
        if webhook_auth_header_value_secret and not webhook_url:
            raise ConfigurationError(
                "webhook_auth_header_value_secret is given without webhook_url: give the "
                "receiver's URL too, or neither"
            )
        # The secret is read here, from a Secret block: never a parameter.
        secret = (
            await read_secret_block(webhook_auth_header_value_secret)
            if webhook_auth_header_value_secret
            else None
        )

        async def client() -> Any:
            return await assemblyai_client(
                credentials or credentials_block,
                budget=shared_request_budget(shared_budget, figures=account_figures(environment))
                if shared_budget
                else None,
            )

        host = Host(
            run_id=str(flow_run.get_id() or "local"),
            stages=STAGE_TASKS,
            logger=logger,
            job_ends=job_ends,
        )
        progress = ProgressArtifact(also=on_progress)
        # AWS keys from a block travel in a context variable to s3fs, never in a parameter.
        with use_s3_credentials(await aws_s3_credentials(aws_credentials_block)):
            async with progress.shown():
                outcome = await transcribe(
                    request,
                    host=host,
                    client=client,
                    environment=environment,
                    webhook_secret=secret,
                    on_progress=progress,
                )
    except VoxlakeError as exc:
        # Failed before any work (bad manifest, unusable output, refused key, lease held):
        # one clear message, and the flow run is Failed; no traceback for an expected error.
        # voxlake_outcome: `voxlake run` prints this error itself (voxlake.runner).
        logger.error("%s", exc, extra={"voxlake_outcome": True})
        return Failed(message=str(exc), data=exc)
    if isinstance(outcome, Estimate):
        await acreate_markdown_artifact(
            markdown=dry_run_markdown(outcome), key="voxlake-dry-run", description="dry run"
        )
        for line in outcome.lines():
            logger.info(line)
        return Completed(message=outcome.lines()[0], data=outcome)
    summary = outcome
    await acreate_markdown_artifact(
        markdown=summary_markdown(summary),
        key="voxlake-run-summary",
        description=summary.message,
    )
    await acreate_table_artifact(
        table=summary_table(summary),
        key="voxlake-run-items",
        description="failures and lowest-confidence items",
    )
    logger.info(summary.message)
    if summary.fatal or (fail_on_error and (summary.failed or summary.delete_failures)):
        return Failed(message=summary.message, data=summary)
    return Completed(message=summary.message, data=summary)
