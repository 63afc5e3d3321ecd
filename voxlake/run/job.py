"""The main job, without Prefect: a run request in, a summary (or a dry run's estimate) out.

Two hosts run it, with the same stages, chunks, retries and outcome:

- the Prefect flow ``transcribe_manifest`` (:mod:`voxlake.flows.transcribe`), which runs each
  chunk's stage as a Prefect task, reads blocks and secrets, and shows the outcome as
  artifacts; what deployments, workers, backfills and ``voxlake run`` with a Prefect API
  configured use;
- ``voxlake run`` with no Prefect API configured (:mod:`voxlake.runner`), which calls the
  stages in this process through :func:`in_process`: a temporary Prefect API would record the
  run in a database that is deleted when the run ends, and its start-up was most of a small
  run's time (benchmarks/RESULTS.md, B10).

Retries: the client retries each HTTP request (429 with Retry-After, 5xx, network) under its
RetryPolicy. A stage is retried (:func:`worth_retrying`, :data:`STAGE_RETRY_DELAYS_S`) only for
what reaches it un-retried — a filesystem blip while writing, a transient error the client
never saw — so the two layers never multiply. The flow declares the same as its tasks' retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from voxlake.client import AssemblyAIClient
from voxlake.errors import VoxlakeError
from voxlake.estimate import Estimate, estimate_run, run_bill
from voxlake.inputs import read_once
from voxlake.manifest.options import deprecation_warning
from voxlake.request import RunRequest
from voxlake.run.chunks import auto_chunk_size, plan_chunks
from voxlake.run.notified import BlockSecret, run_webhook
from voxlake.run.progress import ProgressCallback
from voxlake.run.run_report import preload_report, write_run_report
from voxlake.run.state import Extras, RunSettings, Stage
from voxlake.run.summary import RunSummary
from voxlake.run.transcription import TranscriptionRun
from voxlake.settings import Settings

#: Waits before a stage's second and third tries; Prefect adds up to half again as jitter.
STAGE_RETRY_DELAYS_S = (1.0, 5.0)
STAGE_RETRY_JITTER = 0.5


def worth_retrying(exc: BaseException) -> bool:
    """Retry a stage for transient failures the client has not already retried; never for
    terminal ones."""
    if isinstance(exc, VoxlakeError):
        return exc.transient and exc.attempts <= 1
    return isinstance(exc, OSError)


class StageCall(Protocol):
    """Runs one stage of a run for a chunk of media ids: a Prefect task, or :func:`in_process`."""

    def __call__(self, run: TranscriptionRun, media_ids: list[str]) -> Awaitable[Any]: ...


#: The stages a chunk passes, in order, by the name its failures are recorded under.
Stages = Mapping[Stage, StageCall]


#: The :class:`TranscriptionRun` method each stage calls, by the name a chunk's failure in it
#: is recorded under.
STAGE_METHODS: dict[Stage, str] = {
    "upload": "upload",
    "submit": "submit",
    "poll": "wait",
    "write": "collect",
}


def in_process(delays_s: Sequence[float] = STAGE_RETRY_DELAYS_S) -> Stages:
    """The stages called in this process, each retried as the flow's tasks are: after each of
    ``delays_s`` (plus up to :data:`STAGE_RETRY_JITTER` of it), while :func:`worth_retrying`."""
    log = logging.getLogger(__name__)

    def retrying(stage: Stage) -> StageCall:
        name = STAGE_METHODS[stage]

        async def call(run: TranscriptionRun, media_ids: list[str]) -> Any:
            method = getattr(run, name)
            for delay in delays_s:
                try:
                    return await method(media_ids)
                except Exception as exc:
                    if not worth_retrying(exc):
                        raise
                    log.warning(
                        "%s of %d items failed (%s); trying again in %g s",
                        stage,
                        len(media_ids),
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay * (1 + STAGE_RETRY_JITTER * random.random()))
            return await method(media_ids)

        return call

    return {stage: retrying(stage) for stage in STAGE_METHODS}


#: Builds the run's client once the run knows it will send requests (a dry run sends none).
ClientFactory = Callable[[], Awaitable[AssemblyAIClient]]


#: ``job_ends(listener)`` calls ``listener(transcript_id)`` as each job of the server ends, until
#: the function it returns is called: what a server in this process offers (the embedded one).
JobEnds = Callable[[Callable[[str], None]], Callable[[], None]]


@dataclasses.dataclass(frozen=True)
class Host:
    """What runs the job provides: its run id, how stages are called, where it logs, and
    whether its server says when jobs end (then the run polls at once, not on a schedule)."""

    run_id: str
    stages: Stages
    logger: logging.Logger | logging.LoggerAdapter[Any]
    job_ends: JobEnds | None = None


async def transcribe(
    request: RunRequest,
    *,
    host: Host,
    client: ClientFactory,
    environment: Settings,
    webhook_secret: BlockSecret | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunSummary | Estimate:
    """Transcribe every item of ``request.manifest`` into ``request.output`` (the flow's
    docstring says what each field does); the summary, or a dry run's estimate.

    Raises :class:`~voxlake.errors.VoxlakeError` when it fails before any work (a bad manifest,
    an unusable output, a refused key, a held lease); S3 credentials from a block are the
    caller's context (:func:`voxlake.storage.use_s3_credentials`).
    """
    # The secret comes from this process's environment or a Secret block: never a field.
    webhook = run_webhook(
        request.webhook_url,
        request.webhook_auth_header_name,
        request.webhook_auth_header_value_env,
        request.webhook_safety_poll_s,
        secret=webhook_secret,
    )
    # `voxlake run` read it already, before starting any server (voxlake.inputs).
    items = read_once(
        path=request.manifest,
        defaults=request.options,
        on_invalid=request.on_invalid,
        media_extensions=request.media_extensions,
        s3=request.s3,
        content_hash=request.content_hash,
    )
    deprecated = deprecation_warning(item.options for item in items.items)
    if deprecated:  # once per run, a dry run included
        logging.getLogger(__name__).warning("%s", deprecated)
    if request.dry_run:
        return await asyncio.to_thread(
            estimate_run,
            items.items,
            request.output,
            run_id=host.run_id,
            invalid=len(items.invalid),
            s3=request.s3,
            force=request.force,
            retry_failed=request.retry_failed,
            max_audio_hours=request.max_audio_hours,
            prices=request.price_table,
        )
    settings = RunSettings(
        max_uploads=request.max_uploads,
        poll_timeout_s=request.poll_timeout_s,
        poll_first_s=environment.poll_first_s,
        extras=Extras.of(
            request.captions, request.chars_per_caption, request.sentences, request.paragraphs
        ),
    )
    async with (
        await client() as api,
        TranscriptionRun(
            items,
            request.output,
            client=api,
            flow_run_id=host.run_id,
            settings=settings,
            s3=request.s3,
            force=request.force,
            retry_failed=request.retry_failed,
            max_audio_hours=request.max_audio_hours,
            lease_group=request.lease_group,
            delete_after_collect=request.delete_after_collect,
            on_progress=on_progress,
            webhook=webhook,
            detach=request.detach,
        ) as run,
    ):
        with contextlib.ExitStack() as listening:
            if host.job_ends is not None:
                listening.callback(host.job_ends(lambda transcript_id: run.job_ended()))
            await run.start()
            stage_calls = await run_chunks(run, request, host, report=request.report)
        completed = [
            (r.item, r.audio_duration_s) for r in run.records.values() if r.status == "completed"
        ]
        summary = dataclasses.replace(
            await run.finish(),
            task_runs=stage_calls,
            bill=run_bill(completed, request.price_table),
        )
    if request.report and summary.completed + summary.failed:
        path = await asyncio.to_thread(write_run_report, request.output, host.run_id, request.s3)
        summary = dataclasses.replace(summary, report=path)
    return summary


async def run_chunks(
    run: TranscriptionRun, request: RunRequest, host: Host, *, report: bool = False
) -> int:
    """Move the run's items through the four stages, chunk by chunk; the stage calls it made
    (a flow's task runs).

    Items travel in chunks so that a run of thousands of files costs hundreds of Prefect task
    runs, not thousands (a Prefect server on SQLite records only tens of task runs per second).
    Each chunk moves through upload → submit → poll → collect on its own, so the first chunk's
    jobs are processing while later chunks still upload. With ``report``, the report's
    libraries load in a thread once every chunk is past its submit: the run then only waits
    for its last jobs, and the report after it starts sooner.
    """
    chunk_size, max_uploads = request.chunk_size, request.max_uploads
    size = chunk_size or auto_chunk_size(len(run.records))
    # Longest jobs first (size ~ duration for local media): the server's FIFO queue then ends on
    # short jobs, so the last slots free up together (LPT scheduling).
    chunks = plan_chunks(run.media_ids_longest_first(), chunk_size, max_uploads)
    host.logger.info(
        "%d items to work on (%s; %d invalid rows) in %d chunks of up to %d; writing to %s",
        len(run.records),
        ", ".join(f"{n} {what}" for what, n in run.counts.items()),
        len(run.invalid),
        len(chunks),
        size,
        request.output,
    )
    # Admit chunks to the upload stage a few at a time so early chunks finish uploading (and
    # start processing server-side) first, instead of every chunk advancing in lockstep.
    upload_gate = asyncio.Semaphore(math.ceil(max_uploads / size) + 1)
    calls = 0
    not_yet_submitted = len(chunks)
    preloading: list[asyncio.Future[None]] = []

    async def run_stage(stage: Stage, ids: list[str]) -> Any:
        nonlocal calls
        calls += 1
        return await host.stages[stage](run, ids)

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
                    ids = await run_stage("upload", chunk)
                stage = "submit"
                ids = await run_stage("submit", ids) if ids else ids
            finally:
                past_submit()
            if run.detach:
                return  # submitted: a later run collects them (their ledger says submitted)
            stage = "poll"
            ids = await run_stage("poll", ids) if ids else ids
            stage = "write"
            if ids:
                await run_stage("write", ids)
        except Exception as exc:  # a stage that failed after its retries
            run.fail_pending(chunk, stage, exc)

    await asyncio.gather(*(process(chunk) for chunk in chunks))
    await asyncio.gather(*preloading)
    return calls
