"""The main job: a manifest of media in, Parquet tables of transcripts and words out.

Orchestration only; the work is in :mod:`voxlake.run`. Items travel in chunks so that a
run of thousands of files costs hundreds of Prefect task runs, not thousands (a Prefect server
on SQLite records only tens of task runs per second). Small manifests get one task run per item
and stage. Each chunk moves through upload → submit → poll → collect on its own, so the first
chunk's jobs are processing while later chunks still upload.

Incremental: the run plans every item against the output root's ledger (voxlake.lake.ledger) first;
items already done cost nothing, jobs an interrupted run left in flight are resumed.

Retries: the client retries each HTTP request (429 with Retry-After, 5xx, network) under its
RetryPolicy. Task retries only cover what reaches a task un-retried — a filesystem blip while
writing, a transient error the client never saw — so the two layers never multiply.
"""

# No `from __future__ import annotations` here: Prefect builds the parameter model from the
# signature in another process (deployments, flow.serve), where postponed hints such as
# Literal[...] could not be resolved ("model is not fully defined").
import asyncio
import dataclasses
import logging
import math
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
from voxlake.estimate import estimate_run, run_bill
from voxlake.flows.chunks import auto_chunk_size, plan_chunks
from voxlake.flows.progress import ProgressArtifact
from voxlake.flows.run_report import preload_report, write_run_report
from voxlake.inputs import read_once
from voxlake.manifest.options import deprecation_warning
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
from voxlake.run.notified import run_webhook
from voxlake.run.progress import ProgressCallback
from voxlake.run.state import Extras, RunSettings, Stage
from voxlake.run.transcription import TranscriptionRun
from voxlake.settings import settings as read_settings
from voxlake.shared_budget import account_figures, shared_request_budget
from voxlake.storage import S3Options, use_s3_credentials

TASK_RETRIES = 2


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
    if isinstance(exc, VoxlakeError):
        return exc.transient and exc.attempts <= 1
    return isinstance(exc, OSError)


TASK_OPTIONS: dict[str, Any] = {
    "retries": TASK_RETRIES,
    "retry_delay_seconds": [1.0, 5.0],
    "retry_jitter_factor": 0.5,
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


async def _run_chunks(
    run: TranscriptionRun,
    chunk_size: int | None,
    max_uploads: int,
    output: str,
    *,
    report: bool = False,
) -> int:
    """Move the run's items through the four stages, chunk by chunk; the task runs it took.

    With ``report``, the report's libraries load in a thread once every chunk is past its
    submit: the run then only waits for its last jobs, and the report after it starts sooner.
    """
    logger = get_run_logger()
    size = chunk_size or auto_chunk_size(len(run.records))
    # Longest jobs first (size ~ duration for local media): the server's FIFO queue then ends on
    # short jobs, so the last slots free up together (LPT scheduling).
    chunks = plan_chunks(run.media_ids_longest_first(), chunk_size, max_uploads)
    logger.info(
        "%d items to work on (%s; %d invalid rows) in %d chunks of up to %d; writing to %s",
        len(run.records),
        ", ".join(f"{n} {what}" for what, n in run.counts.items()),
        len(run.invalid),
        len(chunks),
        size,
        output,
    )
    # Admit chunks to the upload stage a few at a time so early chunks finish uploading (and
    # start processing server-side) first, instead of every chunk advancing in lockstep.
    upload_gate = asyncio.Semaphore(math.ceil(max_uploads / size) + 1)
    task_runs = 0
    not_yet_submitted = len(chunks)
    preloading: list[asyncio.Future[None]] = []

    async def run_stage(stage_task: Any, ids: list[str]) -> Any:
        nonlocal task_runs
        task_runs += 1
        return await stage_task(run, ids)

    def past_submit() -> None:
        nonlocal not_yet_submitted
        not_yet_submitted -= 1
        if report and not not_yet_submitted:
            preloading.append(asyncio.get_running_loop().run_in_executor(None, preload_report))

    async def process(chunk: list[str]) -> None:
        stage: Stage = "upload"
        try:
            try:
                async with upload_gate:
                    ids = await run_stage(upload_media, chunk)
                stage = "submit"
                ids = await run_stage(submit_transcripts, ids) if ids else ids
            finally:
                past_submit()
            if run.detach:
                return  # submitted: a later run collects them (their ledger says submitted)
            stage = "poll"
            ids = await run_stage(poll_transcripts, ids) if ids else ids
            stage = "write"
            if ids:
                await run_stage(collect_transcripts, ids)
        except Exception as exc:  # a task that failed after its retries
            run.fail_pending(chunk, stage, exc)

    await asyncio.gather(*(process(chunk) for chunk in chunks))
    await asyncio.gather(*preloading)
    return task_runs


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
    ``voxlake-run-progress``. ``credentials`` and ``on_progress`` are for callers in this
    process, such as ``voxlake run``: no deployment parameters.

    ``manifest`` and ``output`` may be ``s3://`` URLs, and manifests may list ``s3://`` media;
    ``s3`` holds the non-secret S3 options (endpoint_url, region, profile, presign; docs/s3.md).
    """
    logger = get_run_logger()
    try:
        # The flow's edge: voxlake's environment (VOXLAKE_*) is read here, once, and what the run
        # needs of it is passed down. A bad value is the run's one error message.
        environment = read_settings()
        if credentials is not None and credentials_block is not None:
            raise ConfigurationError("give credentials or credentials_block, not both")
        # The secret is read here, from this process's environment or a Secret block: never
        # a parameter.
        webhook = run_webhook(
            webhook_url,
            webhook_auth_header_name,
            webhook_auth_header_value_env,
            webhook_safety_poll_s,
            secret=await read_secret_block(webhook_auth_header_value_secret)
            if webhook_auth_header_value_secret and webhook_url
            else None,
        )
        if webhook_auth_header_value_secret and not webhook_url:
            raise ConfigurationError(
                "webhook_auth_header_value_secret is given without webhook_url: give the "
                "receiver's URL too, or neither"
            )
        # AWS keys from a block travel in a context variable to s3fs, never in a parameter.
        s3_credentials = await aws_s3_credentials(aws_credentials_block)
        with use_s3_credentials(s3_credentials):
            # `voxlake run` read it already, before starting any server (voxlake.inputs).
            items = read_once(
                path=manifest,
                defaults=options,
                on_invalid=on_invalid,
                media_extensions=media_extensions,
                s3=s3,
                content_hash=content_hash,
            )
            deprecated = deprecation_warning(item.options for item in items.items)
            if deprecated:  # once per run, a dry run included
                logging.getLogger(__name__).warning("%s", deprecated)
            run_id = str(flow_run.get_id() or "local")
            if dry_run:
                estimate = await asyncio.to_thread(
                    estimate_run,
                    items.items,
                    output,
                    run_id=run_id,
                    invalid=len(items.invalid),
                    s3=s3,
                    force=force,
                    retry_failed=retry_failed,
                    max_audio_hours=max_audio_hours,
                    prices=price_table,
                )
                await acreate_markdown_artifact(
                    markdown=dry_run_markdown(estimate),
                    key="voxlake-dry-run",
                    description="dry run",
                )
                for line in estimate.lines():
                    logger.info(line)
                return Completed(message=estimate.lines()[0], data=estimate)
            settings = RunSettings(
                max_uploads=max_uploads,
                poll_timeout_s=poll_timeout_s,
                poll_first_s=environment.poll_first_s,
                extras=Extras.of(captions, chars_per_caption, sentences, paragraphs),
            )
            progress = ProgressArtifact(also=on_progress)
            async with (
                await assemblyai_client(
                    credentials or credentials_block,
                    budget=shared_request_budget(
                        shared_budget, figures=account_figures(environment)
                    )
                    if shared_budget
                    else None,
                ) as client,
                TranscriptionRun(
                    items,
                    output,
                    client=client,
                    flow_run_id=run_id,
                    settings=settings,
                    s3=s3,
                    force=force,
                    retry_failed=retry_failed,
                    max_audio_hours=max_audio_hours,
                    lease_group=lease_group,
                    delete_after_collect=delete_after_collect,
                    on_progress=progress,
                    webhook=webhook,
                    detach=detach,
                ) as run,
                progress.shown(),
            ):
                await run.start()
                task_runs = await _run_chunks(run, chunk_size, max_uploads, output, report=report)
                completed = [
                    (r.item, r.audio_duration_s)
                    for r in run.records.values()
                    if r.status == "completed"
                ]
                summary = dataclasses.replace(
                    await run.finish(),
                    task_runs=task_runs,
                    bill=run_bill(completed, price_table),
                )
            if report and summary.completed + summary.failed:
                path = await asyncio.to_thread(write_run_report, output, run_id, s3)
                summary = dataclasses.replace(summary, report=path)

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
    except VoxlakeError as exc:
        # Failed before any work (bad manifest, unusable output, refused key, lease held):
        # one clear message, and the flow run is Failed; no traceback for an expected error.
        # voxlake_outcome: `voxlake run` prints this error itself (voxlake.runner).
        logger.error("%s", exc, extra={"voxlake_outcome": True})
        return Failed(message=str(exc), data=exc)
