"""One transcription run's stages, independent of Prefect.

:class:`TranscriptionRun` owns everything a run shares: the async client (one connection pool),
the batch status poller, the table sink and the per-item records. Its stage methods take a chunk
of media ids and return the ids that advanced; every failure is recorded on the item, never
raised, so one bad item cannot fail its neighbours::

    upload(ids) ─▶ submit(ids) ─▶ wait(ids) ─▶ collect(ids)        finish() ─▶ RunSummary
      extract        (request)     (batched      fetch + transform
                                    list polls)  + load (Parquet)

Each stage skips items that are already past it, so calling a stage again for the same chunk
(a Prefect task retry) never uploads or submits twice. Per-request retries (429 with
Retry-After, 5xx, network) happen inside the client's RetryPolicy and nowhere else; an error
that reaches a record has already had its retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from voxlake.client import AssemblyAIClient
from voxlake.errors import PollTimeoutError, VoxlakeError
from voxlake.manifest import InvalidRow, Manifest, MediaItem, SourceKind
from voxlake.models import Transcript, TranscriptParams, TranscriptStatus
from voxlake.polling import BatchPoller, PollResult
from voxlake.sources import local_fingerprint, redact_text, stage_s3
from voxlake.storage import S3Options, output_filesystem
from voxlake.tables import SinkEntry, TableSink, WrittenFile

logger = logging.getLogger(__name__)

Stage = Literal["manifest", "upload", "submit", "poll", "fetch", "write"]
ProgressListener = Callable[[str, int], None]

_PROGRESS_STAGES = ("upload", "submit", "poll", "collect")

# collect() writes fetched transcripts once this many words are waiting: ~1 KB a word as
# parsed models, so ~100 MB, and rows enough that a write's fixed cost is noise.
_WRITE_GROUP_WORDS = 100_000


def _progress_stage(stage: Stage) -> str:
    return {"manifest": "upload", "fetch": "collect", "write": "collect"}.get(stage, stage)


# Observers of stage progress (stage name, items that passed it), e.g. the CLI's progress bar.
# A registry rather than a flow parameter: callables cannot be flow parameters.
progress_listeners: list[ProgressListener] = []


@dataclass(slots=True)
class ItemRecord:
    """What the run knows about one manifest item. Small: transcripts themselves are not kept."""

    item: MediaItem
    source_size: int | None = None
    source_fingerprint: str | None = None
    audio_url: str | None = None
    transcript_id: str | None = None
    submitted_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    status: Literal["pending", "completed", "error"] = "pending"
    error: str | None = None
    failed_stage: Stage | None = None
    confidence: float | None = None
    audio_duration_s: float | None = None

    @property
    def done(self) -> bool:
        return self.status != "pending"


@dataclass(frozen=True, slots=True)
class Failure:
    media_id: str
    source: str
    stage: Stage
    error: str
    transcript_id: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The run's outcome, as printed by the CLI and published as Prefect artifacts."""

    total: int
    completed: int
    failed: int
    audio_hours: float
    mean_confidence: float | None
    failures: tuple[Failure, ...]
    lowest_confidence: tuple[tuple[str, float], ...]  # (media_id, confidence), worst first
    output: str
    files: dict[str, int]  # table -> Parquet files written by this run
    elapsed_s: float
    task_runs: int = 0  # Prefect task runs the flow ran, set by the flow

    @property
    def message(self) -> str:
        if not self.failed:
            return f"{self.completed}/{self.total} items transcribed"
        return (
            f"{self.completed}/{self.total} items transcribed, {self.failed} failed: "
            + ", ".join(f.media_id for f in self.failures[:10])
            + (" …" if self.failed > 10 else "")
        )


@dataclass
class RunSettings:
    """Tuning knobs of a run (not credentials: those come from the environment or a Block)."""

    max_uploads: int = 16  # concurrent uploads: bandwidth-bound, not API-bound
    # Concurrent API calls besides uploads (submits, fetches). Bounded so that the connection
    # pool stays small: httpx checks every idle pooled connection (two syscalls each) on every
    # request, which was 17 % of a 2,000-file run's CPU with ~100 pooled connections.
    max_requests: int = 16
    poll_min_interval_s: float = 2.0
    poll_max_interval_s: float = 15.0
    poll_tail_interval_s: float = 0.5
    poll_timeout_s: float | None = 6 * 3600.0
    max_buffer_rows: int = 500_000
    content_hash: bool = False  # add sha256 of local files to source_fingerprint (reads twice)


class SharedPoller:
    """One status-polling loop for the whole run, however many chunks wait on it.

    Chunks register their transcript ids and await them; a single background loop asks the list
    endpoint for every pending id at once (``ceil(pending / 200)`` requests a round), so the
    request count does not grow with the number of chunks. The interval backs off while nothing
    finishes and snaps back when something does.
    """

    def __init__(self, client: AssemblyAIClient, settings: RunSettings) -> None:
        self._poller = BatchPoller(client)
        self._settings = settings
        self._waiters: dict[str, asyncio.Future[PollResult]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def wait(self, transcript_ids: Sequence[str]) -> list[PollResult]:
        loop = asyncio.get_running_loop()
        futures = []
        for tid in transcript_ids:
            fut = self._waiters.get(tid)
            if fut is None:
                fut = self._waiters[tid] = loop.create_future()
                self._poller.add(tid)
            futures.append(fut)
        self._wake.set()
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="voxlake-poller")
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        interval = self._settings.poll_min_interval_s
        while self._poller.pending:
            self._wake.clear()
            try:
                results = await self._poller.poll_once()
            except VoxlakeError as exc:
                # The client already retried; a whole round failing is reported to every waiter
                # rather than silently spinning.
                logger.warning("status poll round failed: %s", exc)
                results = []
                if not exc.transient:
                    for tid in list(self._poller.pending):
                        self._resolve(PollResult(tid, None, error=exc))
                        self._poller.discard(tid)
                    return
            for result in results:
                self._resolve(result)
            if results:
                interval = self._settings.poll_min_interval_s
            else:
                interval = min(interval * 1.5, self._settings.poll_max_interval_s)
            if 0 < len(self._poller.pending) <= self._poller.page_limit:
                # The tail: one list page a round, so polling faster costs little and the run
                # ends closer to the last job's completion.
                interval = min(interval, self._settings.poll_tail_interval_s)
            if self._poller.pending:
                # Newly registered ids do not need to wait out a backed-off interval.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=interval)

    def _resolve(self, result: PollResult) -> None:
        fut = self._waiters.pop(result.transcript_id, None)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def abandon(self, transcript_ids: Iterable[str]) -> None:
        """Stop tracking ids whose waiters gave up (poll timeout)."""
        for tid in transcript_ids:
            self._poller.discard(tid)
            fut = self._waiters.pop(tid, None)
            if fut is not None and not fut.done():
                fut.cancel()

    async def aclose(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task


class TranscriptionRun:
    """State and stages of one run. Use as ``async with``; call :meth:`finish` at the end."""

    def __init__(
        self,
        manifest: Manifest,
        output: str | Path,
        *,
        client: AssemblyAIClient,
        flow_run_id: str,
        settings: RunSettings | None = None,
        run_date: dt.date | None = None,
        s3: S3Options | None = None,
    ) -> None:
        self.settings = settings or RunSettings()
        self.client = client
        self.output = str(output)
        self.flow_run_id = flow_run_id
        self.records: dict[str, ItemRecord] = {i.media_id: ItemRecord(i) for i in manifest.items}
        self.invalid: list[InvalidRow] = list(manifest.invalid)
        # Uploads and submits go before reads when a run needs more than a window's requests.
        # (An http(s) source is only submitted; a presigned S3 one is counted as uploaded too.)
        client.reserve_requests(
            sum(1 if r.item.kind is SourceKind.http else 2 for r in self.records.values())
        )
        self.s3 = s3  # non-secret S3 options: endpoint, region, profile, presign
        filesystem, root = output_filesystem(self.output, s3)  # s3:// roots: s3fs, bucket checked
        self._sink = TableSink(
            root,
            filesystem=filesystem,
            flow_run_id=flow_run_id,
            run_date=run_date or dt.datetime.now(dt.UTC).date(),
            max_buffer_rows=self.settings.max_buffer_rows,
        )
        # The sink is not thread-safe and its writes run in worker threads (they are CPU and
        # disk bound, and must not stall the event loop that drives hundreds of requests).
        self._sink_lock = threading.Lock()
        self._uploads = asyncio.Semaphore(self.settings.max_uploads)
        self._requests = asyncio.Semaphore(self.settings.max_requests)
        self._poller = SharedPoller(client, self.settings)
        self._started = time.monotonic()
        self._files: dict[str, list[WrittenFile]] = {}

    async def __aenter__(self) -> TranscriptionRun:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self._poller.aclose()
        if exc_type is not None:
            with self._sink_lock:
                self._sink.__exit__(exc_type, exc, tb)

    @property
    def media_ids(self) -> list[str]:
        return list(self.records)

    def media_ids_longest_first(self) -> list[str]:
        """Local media by size, largest first (a proxy for duration); others keep their order."""

        def size(media_id: str) -> int:
            item = self.records[media_id].item
            if item.kind is SourceKind.local:
                with contextlib.suppress(OSError):
                    return item.path.stat().st_size
            return 0

        return sorted(self.records, key=size, reverse=True)

    # --- stages -------------------------------------------------------------------------------

    async def upload(self, media_ids: Sequence[str]) -> list[str]:
        """Upload local media (http sources pass through: AssemblyAI fetches them)."""
        todo = [m for m in media_ids if self._pending(m) and self.records[m].audio_url is None]
        await _each(todo, self._upload_one)
        self._progress("upload", len(todo))
        return [m for m in media_ids if self._pending(m) and self.records[m].audio_url]

    async def submit(self, media_ids: Sequence[str]) -> list[str]:
        todo = [m for m in media_ids if self._pending(m) and self.records[m].transcript_id is None]
        await _each(todo, self._submit_one)
        self._progress("submit", len(todo))
        return [m for m in media_ids if self._pending(m) and self.records[m].transcript_id]

    async def wait(self, media_ids: Sequence[str]) -> list[str]:
        """Wait until each submitted transcript is final; returns the ids ready to collect."""
        by_tid = {
            self.records[m].transcript_id: m
            for m in media_ids
            if self._pending(m) and self.records[m].transcript_id
        }
        if not by_tid:
            return []
        waiting = self._poller.wait(list(by_tid))  # type: ignore[arg-type]
        try:
            results = await asyncio.wait_for(waiting, timeout=self.settings.poll_timeout_s)
        except TimeoutError:
            self._poller.abandon(by_tid)  # type: ignore[arg-type]
            for tid, media_id in by_tid.items():
                rec = self.records[media_id]
                if not rec.done:
                    exc = PollTimeoutError(tid, self.settings.poll_timeout_s or 0.0, None)
                    self._fail(media_id, "poll", exc)
            return []
        ready = []
        for result in results:
            media_id = by_tid[result.transcript_id]
            if result.error is not None:
                self._fail(media_id, "poll", result.error)
            else:
                ready.append(media_id)
        self._progress("poll", len(by_tid))
        return ready

    async def collect(self, media_ids: Sequence[str]) -> int:
        """Fetch each final transcript once and write its rows. Returns the items written.

        Fetches run concurrently (``max_requests`` at a time) and their rows are written in
        groups: one worker-thread hop and one batch per table per group, because for short
        transcripts the cost of a write, not of the words, was most of this stage's CPU. A
        group is written once it holds ``_WRITE_GROUP_WORDS`` words, so a chunk of long
        transcripts is never all in memory at once.
        """
        todo = [m for m in media_ids if self._pending(m) and self.records[m].transcript_id]
        group: list[tuple[ItemRecord, Transcript]] = []
        words = 0

        async def fetch(media_id: str) -> None:
            nonlocal group, words
            transcript = await self._fetch_one(media_id)
            if transcript is None:
                return
            group.append((self.records[media_id], transcript))
            words += len(transcript.words or ())
            if words >= _WRITE_GROUP_WORDS:
                full, group, words = group, [], 0
                await self._write(full)

        await _each(todo, fetch)
        await self._write(group)
        self._progress("collect", len(todo))
        return len(todo)

    async def finish(self) -> RunSummary:
        """Record every item that has no row yet as a failure, flush the tables, summarise."""
        for media_id, rec in self.records.items():
            if not rec.done:
                # Defensive: a stage that returned without recording the item. Losing it
                # silently would break "every item ends as exactly one row".
                self._fail(media_id, "write", VoxlakeError("item was not processed to the end"))
        rows = self._invalid_rows()
        with self._sink_lock:
            for media_id, source, error in rows:
                self._sink.add(media_id, None, source=source, options_hash="", error=error)
            self._files = await asyncio.to_thread(self._sink.close)
        return self.summary()

    def summary(self) -> RunSummary:
        recs = list(self.records.values())
        completed = [r for r in recs if r.status == "completed"]
        failures = [
            Failure(
                r.item.media_id,
                r.item.source,
                r.failed_stage or "write",
                r.error or "",
                r.transcript_id,
            )
            for r in recs
            if r.status == "error"
        ]
        failures += [
            Failure(mid, src or "", "manifest", err, None) for mid, src, err in self._invalid_rows()
        ]
        confidences = [
            (r.item.media_id, r.confidence) for r in completed if r.confidence is not None
        ]
        mean = sum(c for _, c in confidences) / len(confidences) if confidences else None
        return RunSummary(
            total=len(recs) + len(self.invalid),
            completed=len(completed),
            failed=len(failures),
            audio_hours=sum(r.audio_duration_s or 0.0 for r in completed) / 3600.0,
            mean_confidence=mean,
            failures=tuple(failures),
            lowest_confidence=tuple(sorted(confidences, key=lambda mc: mc[1])[:10]),  # type: ignore[arg-type,return-value]
            output=self.output,
            files={table: len(files) for table, files in self._files.items()},
            elapsed_s=time.monotonic() - self._started,
        )

    # --- one item -----------------------------------------------------------------------------

    async def _upload_one(self, media_id: str) -> None:
        rec = self.records[media_id]
        item = rec.item
        if item.kind is SourceKind.http:
            rec.audio_url = item.source
            return
        async with self._uploads:
            try:
                if item.kind is SourceKind.s3:
                    # Streamed from S3 into the upload, or presigned (voxlake.sources).
                    staged = await stage_s3(self.client, item.source, self.s3)
                    rec.source_size, rec.source_fingerprint = staged.size, staged.fingerprint
                    rec.audio_url = staged.audio_url
                    return
                size, fingerprint = await asyncio.to_thread(
                    local_fingerprint, item.path, content_hash=self.settings.content_hash
                )
                rec.source_size, rec.source_fingerprint = size, fingerprint
                with item.path.open("rb") as f:
                    uploaded = await self.client.upload(f, size=size)
            except (VoxlakeError, OSError) as exc:
                self._fail(media_id, "upload", exc)
                return
        rec.audio_url = uploaded.upload_url

    async def _submit_one(self, media_id: str) -> None:
        rec = self.records[media_id]
        params = TranscriptParams.model_validate(
            {"audio_url": rec.audio_url, **rec.item.options.to_request_params()}
        )
        try:
            async with self._requests:
                transcript_id = await self._submit_without_paying_twice(rec, params)
        except VoxlakeError as exc:
            self._fail(media_id, "submit", exc)
            return
        # The id is the receipt for a paid job: from here on, never submit this item again.
        rec.transcript_id = transcript_id
        rec.submitted_at = dt.datetime.now(dt.UTC)

    async def _submit_without_paying_twice(self, rec: ItemRecord, params: TranscriptParams) -> str:
        """Submit; after an ambiguous failure, adopt the job if the API did create it.

        The client does not retry a POST that may have been acted on (500/502/504, a reset
        after sending). An upload URL is unique to this item, so a job in the newest list pages
        with that ``audio_url`` is ours: adopt it instead of paying for a second one.
        """
        try:
            return (await self.client.create_transcript(params)).id
        except VoxlakeError as exc:
            if not (exc.transient and exc.attempts == 1) or rec.item.kind is not SourceKind.local:
                raise
            ambiguous = exc
        async for page in self.client.iter_transcript_pages(limit=200, max_pages=3):
            for listed in page.transcripts:
                if listed.audio_url == rec.audio_url:
                    logger.info(
                        "%s: adopted job %s after %s", rec.item.media_id, listed.id, ambiguous
                    )
                    return listed.id
        return (await self.client.create_transcript(params)).id

    async def _fetch_one(self, media_id: str) -> Transcript | None:
        """The final transcript of an item, or None when its failure has been recorded."""
        rec = self.records[media_id]
        async with self._requests:
            try:
                transcript = await self.client.get_transcript(rec.transcript_id or "")
            except VoxlakeError as exc:
                self._fail(media_id, "fetch", exc)
                return None
        if transcript.status not in (TranscriptStatus.completed, TranscriptStatus.error):
            # The list endpoint said final; a lagging replica may disagree. Treat as a poll miss.
            self._fail(
                media_id,
                "fetch",
                VoxlakeError(
                    f"transcript {transcript.id} reported {transcript.status.value} after the "
                    "list endpoint reported it final; rerun to collect it"
                ),
            )
            return None
        rec.completed_at = dt.datetime.now(dt.UTC)
        return transcript

    async def _write(self, group: Sequence[tuple[ItemRecord, Transcript]]) -> None:
        """Write the rows of fetched transcripts in one worker-thread hop, then record each."""
        if not group:
            return
        entries: list[SinkEntry] = [
            (
                rec.item.media_id,
                transcript,
                {
                    "source": rec.item.source,
                    "options_hash": rec.item.options_hash,
                    "source_size": rec.source_size,
                    "source_fingerprint": rec.source_fingerprint,
                    "submitted_at": rec.submitted_at,
                    "completed_at": rec.completed_at,
                },
            )
            for rec, transcript in group
        ]
        errors = await asyncio.to_thread(self._add_locked, entries)
        for (rec, transcript), error in zip(group, errors, strict=True):
            if error is not None:
                # Its rows could not be built (a malformed transcript), so none were written:
                # it gets an error row like any failed item, and its neighbours' rows stand.
                self._fail(rec.item.media_id, "write", error)
            elif transcript.status is TranscriptStatus.completed:
                rec.status = "completed"
                rec.confidence = transcript.confidence
                rec.audio_duration_s = (
                    float(transcript.audio_duration)
                    if transcript.audio_duration is not None
                    else None
                )
            else:
                rec.status = "error"
                rec.failed_stage = "poll"
                # The error text may quote a presigned audio_url: its query string is removed.
                rec.error = (
                    redact_text(transcript.error) or "transcript failed without an error message"
                )

    def _add_locked(self, entries: Sequence[SinkEntry]) -> list[Exception | None]:
        # Runs in a worker thread: building and writing batches is CPU and disk bound, and must
        # not stall the event loop that drives hundreds of requests.
        with self._sink_lock:
            return self._sink.add_many(entries)

    def _progress(self, stage: str, n: int) -> None:
        for listener in progress_listeners:
            listener(stage, n)

    def fail_pending(self, media_ids: Iterable[str], stage: Stage, exc: BaseException) -> None:
        """Record every still-pending item of a chunk whose stage failed for good."""
        for media_id in media_ids:
            if self._pending(media_id):
                self._fail(media_id, stage, exc)

    # --- bookkeeping --------------------------------------------------------------------------

    def _pending(self, media_id: str) -> bool:
        return not self.records[media_id].done

    def _fail(self, media_id: str, stage: Stage, exc: BaseException) -> None:
        rec = self.records[media_id]
        rec.status = "error"
        rec.failed_stage = stage
        rec.error = redact_text(f"{stage}: {exc}")  # never a presigned URL's signature
        logger.warning("%s failed at %s", media_id, rec.error)
        if stage == "upload":
            self.client.reserve_requests(-1)  # its submit will never be sent
        # The item leaves the pipeline here: count it through the stages it will never reach.
        for later in _PROGRESS_STAGES[_PROGRESS_STAGES.index(_progress_stage(stage)) + 1 :]:
            self._progress(later, 1)
        with self._sink_lock:
            self._sink.add(
                media_id,
                None,
                source=rec.item.source,
                options_hash=rec.item.options_hash,
                source_size=rec.source_size,
                source_fingerprint=rec.source_fingerprint,
                submitted_at=rec.submitted_at,
                error=rec.error,
                transcript_id=rec.transcript_id,
            )

    def _invalid_rows(self) -> list[tuple[str, str, str]]:
        """(media_id, source, error) of each skipped manifest row, with a media_id of its own.

        A row without a usable id, or whose id another row already has (a duplicate), is named
        after its row number so every manifest row stays exactly one ``transcripts`` row.
        """
        taken = set(self.records)
        rows = []
        for inv in self.invalid:
            media_id = inv.media_id
            if media_id is None or media_id in taken:
                media_id = f"{inv.media_id or 'manifest'}@row{inv.row}"
            taken.add(media_id)
            rows.append((media_id, inv.source or "", f"manifest row {inv.row}: {inv.reason}"))
        return rows


async def _each(media_ids: Sequence[str], fn: Callable[[str], Awaitable[None]]) -> None:
    """Run ``fn`` for every id concurrently; each fn records its own failures."""
    if media_ids:
        await asyncio.gather(*(fn(m) for m in media_ids))


def chunked(ids: Sequence[str], chunk_size: int) -> list[list[str]]:
    return [list(ids[i : i + chunk_size]) for i in range(0, len(ids), chunk_size)]


def auto_chunk_size(n_items: int, *, max_task_runs: int = 100, stages: int = 4) -> int:
    """One item per task run for small manifests; bigger chunks keep task runs bounded.

    Prefect's server records ~40-49 task runs/s on this class of machine, so a run of N items
    with 4 tasks per chunk costs ``4 * N / chunk_size`` task runs. Up to ``max_task_runs`` the
    UI shows one task run per item and stage; beyond it chunks grow to keep that bound.
    """
    if n_items * stages <= max_task_runs:
        return 1
    return max(1, math.ceil(n_items * stages / max_task_runs))
