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
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

from voxlake.client import AssemblyAIClient
from voxlake.crashpoints import crashpoint
from voxlake.errors import (
    AuthenticationError,
    ForbiddenError,
    NetworkError,
    NotFoundError,
    PollTimeoutError,
    RateLimitError,
    ServerError,
    UploadAccessError,
    VoxlakeError,
)
from voxlake.estimate import deferral_reason, media_durations, within_budget
from voxlake.ledger import Event, LeaseLostError, Ledger, Status, comparable_url
from voxlake.ledger import plan as ledger_plan
from voxlake.manifest import InvalidRow, Manifest, MediaItem, SourceKind
from voxlake.models import Transcript, TranscriptParams, TranscriptStatus
from voxlake.polling import SharedPoller
from voxlake.redact import redact_text, redact_url
from voxlake.settings import settings
from voxlake.sources import ObjectInfo, stage_s3
from voxlake.storage import S3Options, output_filesystem
from voxlake.tables import SinkEntry, TableSink, WrittenFile

logger = logging.getLogger(__name__)

Stage = Literal["manifest", "upload", "submit", "poll", "fetch", "write"]
#: ``on_progress(stage, n)``: ``("total", n)`` once the run has planned its n items, then
#: ``(stage, k)`` as k items pass ``upload``, ``submit``, ``poll`` or ``collect`` (a failed item
#: counts through the stages it will never reach, so every bar ends at its total).
ProgressCallback = Callable[[str, int], None]

_PROGRESS_STAGES = ("upload", "submit", "poll", "collect")

# collect() writes fetched transcripts once this many words are waiting: ~1 KB a word as
# parsed models, so ~100 MB, and rows enough that a write's fixed cost is noise.
_WRITE_GROUP_WORDS = 100_000


def _progress_stage(stage: Stage) -> str:
    return {"manifest": "upload", "fetch": "collect", "write": "collect"}.get(stage, stage)


@dataclass(slots=True)
class ItemRecord:
    """What the run knows about one item it works on. Small: transcripts are not kept."""

    item: MediaItem
    origin: Literal["new", "retry", "resume"] = "new"
    audio_url: str | None = None
    transcript_id: str | None = None
    # An earlier run recorded `submitting` and never learned the outcome: the job is looked up
    # by audio_url (resolve_unknown) before anything is submitted again.
    unknown: bool = False
    submitting_at: dt.datetime | None = None
    submitted_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    status: Literal["pending", "completed", "error"] = "pending"
    error: str | None = None
    failed_stage: Stage | None = None
    confidence: float | None = None  # None for a transcript with no words: no mean counts it
    no_words: bool = False  # completed with no words (silence, music)
    audio_duration_s: float | None = None
    # Its job failed (ledger `job_failed`): later runs skip it unless --retry-failed.
    job_failed: bool = False
    gone: bool = False  # resumed, and its job no longer exists on the server

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


class PlanCounts(TypedDict, total=False):
    """How the ledger planned the run's items (the RunSummary fields of the same names)."""

    new: int
    retried: int
    resumed: int
    skipped: int
    skipped_failed: int
    deferred: int


class _RowFields(TypedDict):
    """An item's transcripts-row fields that the run knows (see tables.transcript_row)."""

    source: str
    options_hash: str
    source_size: int | None
    source_fingerprint: str | None
    submitted_at: dt.datetime | None
    completed_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The run's outcome, as printed by the CLI and published as Prefect artifacts."""

    total: int  # manifest items (valid and invalid rows)
    completed: int  # completed by this run
    failed: int
    audio_hours: float
    mean_confidence: float | None
    failures: tuple[Failure, ...]
    lowest_confidence: tuple[tuple[str, float], ...]  # (media_id, confidence), worst first
    output: str
    files: dict[str, int]  # table -> Parquet files written by this run
    elapsed_s: float
    task_runs: int = 0  # Prefect task runs the flow ran, set by the flow
    new: int = 0  # submitted for the first time
    retried: int = 0  # submitted again after an earlier run's failure
    resumed: int = 0  # in flight in an earlier run: adopted, polled, collected
    skipped: int = 0  # already completed in an earlier run (0 requests)
    skipped_failed: int = 0  # their job failed in an earlier run (--retry-failed resubmits)
    deferred: int = 0  # over the run's audio budget: the next run picks them up
    gone: int = 0  # resumed, but their jobs no longer exist: failed (--retry-failed resubmits)
    fatal: str | None = None  # why the run stopped early (API key refused, lease lost)
    report: str | None = None  # the run's HTML report beside the tables, once written
    requests: int = 0  # AssemblyAI requests this run sent, retries included
    no_words: int = 0  # completed with no words: left out of mean_confidence
    # Items later runs skip because their job failed (before, or in this run): --retry-failed
    # submits them again.
    retry_failed_ids: tuple[str, ...] = ()
    # The completed items' cost at list prices, by speech model and requested feature (lines of
    # voxlake.estimate.Estimate.bill_lines), set by the flow.
    bill: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        worked = self.total - self.skipped - self.skipped_failed - self.deferred
        text = f"{self.completed}/{worked} items transcribed"
        extras = [
            f"{n} {label}"
            for n, label in (
                (self.resumed, "resumed"),
                (self.skipped, "skipped as already done"),
                (self.skipped_failed, "skipped as failed before (--retry-failed)"),
                (self.deferred, "deferred by the budget"),
            )
            if n
        ]
        if extras:
            text += " (" + ", ".join(extras) + ")"
        if self.fatal:
            text += f"; run stopped: {self.fatal}"
        if not self.failed:
            return text
        return (
            f"{text}, {self.failed} failed: "
            + ", ".join(f.media_id for f in self.failures[:10])
            + (" …" if self.failed > 10 else "")
        )


def _poll_first_s() -> float:
    return settings().poll_first_s


@dataclass
class RunSettings:
    """Tuning knobs of a run (not credentials: those come from the environment or a Block)."""

    max_uploads: int = 16  # concurrent uploads: bandwidth-bound, not API-bound
    # Concurrent API calls besides uploads (submits, fetches). Bounded so that the connection
    # pool stays small: httpx checks every idle pooled connection (two syscalls each) on every
    # request, a large share of a big run's CPU with ~100 pooled connections.
    max_requests: int = 16
    # A chunk's submit to its first status poll (VOXLAKE_POLL_FIRST_S, else 3 s).
    poll_first_s: float = field(default_factory=_poll_first_s)
    poll_min_interval_s: float = 2.0
    poll_max_interval_s: float = 15.0
    # The tail's rounds (polling.SharedPoller): paced to find ~3 finished jobs each, from every
    # 0.5 s (a big run's tail) to 2.5 first-poll delays apart: 7.5 s, as AssemblyAI asks to poll
    # every few seconds, or 0.5 s for a local server whose jobs take a fraction of a second
    # (VOXLAKE_POLL_FIRST_S=0.2, the test suite's), which is then polled as it always was.
    poll_tail_interval_s: float = 0.5
    poll_tail_finds: float = 3.0
    poll_timeout_s: float | None = 6 * 3600.0
    max_buffer_rows: int = 500_000
    # Finished items are committed (rows published, then the ledger told) at least this often
    # and at least every this many items, so a crash loses little work and memory stays flat.
    commit_interval_s: float = 10.0
    commit_items: int = 1_000
    # Looking a job up by audio_url after an unknown create: rounds before giving up (the
    # ledger keeps `submitting`, so the next run looks again before it resubmits).
    submit_rounds: int = 4


class JobGoneError(VoxlakeError):
    """A job an earlier run submitted no longer exists on the server (404 when resumed).

    Terminal: the item is ``job_failed``, and only ``--retry-failed`` pays for it again.
    """


class SubmitOutcomeUnknownError(VoxlakeError):
    """A create failed in a way that may have created the job, and the job was not found.

    Transient: the ledger keeps the item as ``submitting``, so the next run looks the job up by
    its audio_url before it submits anything.
    """

    transient = True


#: Clock skew allowed between this machine and AssemblyAI when a job is looked up by the time
#: it was created.
_LOOKUP_SKEW = dt.timedelta(minutes=10)


class TranscriptionRun:
    """State and stages of one run. Use as ``async with``; call :meth:`finish` at the end.

    Entering opens the output root's ledger (writability probe, lease, stale temp files), plans
    every manifest item against it (new, resume, skip) and applies the audio budget; nothing is
    requested from AssemblyAI before :meth:`start`. ``on_progress`` (:data:`ProgressCallback`)
    hears how many items pass each stage, e.g. to draw progress bars; it is called from the
    event loop and from the worker threads that write, so it must be quick and thread-safe.
    """

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
        force: bool = False,
        retry_failed: bool = False,
        max_audio_hours: float | None = None,
        lease_group: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.settings = settings or RunSettings()
        self.client = client
        self.output = str(output)
        self.flow_run_id = flow_run_id
        self.manifest = manifest
        self.invalid: list[InvalidRow] = list(manifest.invalid)
        self.s3 = s3  # non-secret S3 options: endpoint, region, profile, presign
        self._force, self._retry_failed = force, retry_failed
        self._max_audio_hours = max_audio_hours
        self._lease_group = lease_group
        self._on_progress = on_progress
        self._run_date = run_date or dt.datetime.now(dt.UTC).date()
        self.records: dict[str, ItemRecord] = {}
        self.counts: PlanCounts = {}
        self._skipped_failed: list[str] = []  # media ids whose job failed in an earlier run
        self.fatal: VoxlakeError | None = None
        self.ledger: Ledger | None = None
        # The sink is not thread-safe and its writes run in worker threads (they are CPU and
        # disk bound, and must not stall the event loop that drives hundreds of requests).
        self._sink_lock = threading.Lock()
        self._uncommitted: list[Event] = []  # ledger events of rows not yet published
        self._last_commit = time.monotonic()
        self._uploads = asyncio.Semaphore(self.settings.max_uploads)
        self._requests = asyncio.Semaphore(self.settings.max_requests)
        self._poller = SharedPoller(
            client,
            min_interval_s=self.settings.poll_min_interval_s,
            max_interval_s=self.settings.poll_max_interval_s,
            tail_interval_s=self.settings.poll_tail_interval_s,
            tail_max_interval_s=max(
                self.settings.poll_tail_interval_s, 2.5 * self.settings.poll_first_s
            ),
            tail_finds=self.settings.poll_tail_finds,
        )
        self._started = time.monotonic()
        self._files: dict[str, list[WrittenFile]] = {}

    async def __aenter__(self) -> TranscriptionRun:
        self.ledger = await asyncio.to_thread(
            Ledger.open,
            self.output,
            run_id=self.flow_run_id,
            s3=self.s3,
            lease_group=self._lease_group,
        )
        try:
            filesystem, root = output_filesystem(self.output, self.s3)
            self._sink = TableSink(
                root,
                filesystem=filesystem,
                flow_run_id=self.flow_run_id,
                run_date=self._run_date,
                max_buffer_rows=self.settings.max_buffer_rows,
            )
            await self._plan()
        except BaseException:
            self.ledger.close()
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self._poller.aclose()
        if exc_type is not None:
            with self._sink_lock:
                self._sink.__exit__(exc_type, exc, tb)
        if self.ledger is not None:
            await asyncio.to_thread(self.ledger.close)

    async def _plan(self) -> None:
        assert self.ledger is not None
        planned = ledger_plan(
            self.manifest.items,
            self.ledger.states,
            force=self._force,
            retry_failed=self._retry_failed,
        )
        counts = Counter(p.action for p in planned)
        to_submit = [p.item for p in planned if p.action == "new"]
        deferred: list[MediaItem] = []
        if self._max_audio_hours is not None:
            durations = await asyncio.to_thread(media_durations, to_submit, self.s3)
            # In manifest order (see within_budget); the chunks then go longest first.
            _, deferred = within_budget(to_submit, durations, self._max_audio_hours)
            if deferred:
                events = [
                    Event(
                        i,
                        Status.deferred,
                        error=deferral_reason(durations[i.media_id], self._max_audio_hours),
                        audio_duration_s=durations[i.media_id],
                    )
                    for i in deferred
                ]
                await asyncio.to_thread(self.ledger.append, events)
        deferred_ids = {i.media_id for i in deferred}
        for p in planned:
            if p.action == "new" and p.item.media_id not in deferred_ids:
                origin: Literal["new", "retry", "resume"] = "retry" if p.retry else "new"
                self.records[p.item.media_id] = ItemRecord(p.item, origin=origin)
            elif p.action == "resume" and p.state is not None:
                self.records[p.item.media_id] = ItemRecord(
                    p.item,
                    origin="resume",
                    audio_url=p.state.audio_url,
                    transcript_id=p.state.transcript_id,
                    unknown=p.state.status is Status.submitting,
                    submitting_at=p.state.submitting_at,
                )
        self._skipped_failed = [p.item.media_id for p in planned if p.action == "skip_failed"]
        origins = Counter(r.origin for r in self.records.values())
        self.counts = {
            "new": origins["new"],
            "retried": origins["retry"],
            "resumed": origins["resume"],
            "skipped": counts["skip_done"],
            "skipped_failed": counts["skip_failed"],
            "deferred": len(deferred),
        }
        # Uploads and submits go before reads when a run needs more than a window's requests.
        # (An http(s) source is only submitted; a presigned S3 one is counted as uploaded too.)
        self.client.reserve_requests(
            sum(
                0 if r.transcript_id else 1 if r.item.kind is SourceKind.http else 2
                for r in self.records.values()
            )
        )
        self._progress("total", len(self.records))

    @property
    def media_ids(self) -> list[str]:
        return list(self.records)

    def media_ids_longest_first(self) -> list[str]:
        """Local and S3 media by size, largest first (a proxy for duration); others keep order.

        Items resumed from an earlier run go first: their jobs are paid for and may be done.
        """
        ordered = _longest_first(r.item for r in self.records.values())
        return sorted(
            (i.media_id for i in ordered),
            key=lambda m: self.records[m].origin != "resume",  # stable: keeps size order
        )

    # --- before any upload --------------------------------------------------------------------

    async def start(self) -> None:
        """Check the API key with one request, then settle the jobs earlier runs left unknown.

        A refused key stops the run here, after exactly one failing request and before any
        upload (raises :class:`~voxlake.errors.AuthenticationError`). A run with nothing to do
        sends nothing.
        """
        if not self.records:
            return
        try:
            await self.client.list_transcripts(limit=1)
        except (AuthenticationError, ForbiddenError) as exc:
            # The same error, its advice said once and for where the key comes from in a run.
            raise type(exc)(
                exc.status_code,
                exc.api_message,
                method=exc.method,
                path=exc.path,
                hint=f"AssemblyAI at {redact_url(self.client.settings.base_url)} refused the API "
                "key: check ASSEMBLYAI_API_KEY (or the credentials block) and that the key "
                "belongs to that endpoint's region. Nothing was uploaded or submitted",
            ) from None
        await self.resolve_unknown()

    async def resolve_unknown(self) -> None:
        """Find the jobs of items whose create outcome an earlier run never learned.

        Each such item has a ``submitting`` event with its audio_url. A job in the list endpoint
        with that audio_url, created after that event, is adopted (recorded as ``submitted``);
        an item with no such job was never submitted, and is uploaded and submitted afresh.
        """
        unknown = [r for r in self.records.values() if r.unknown]
        if not unknown:
            return
        found = await self._find_jobs(unknown)
        events = []
        for rec in unknown:
            rec.unknown = False
            tid = found.get(rec.item.media_id)
            if tid is not None:
                rec.transcript_id = tid
                events.append(Event(rec.item, Status.submitted, transcript_id=tid))
                logger.info("%s: adopted job %s from an interrupted run", rec.item.media_id, tid)
                # Planned as an upload and a submit that will now never be sent.
                self.client.reserve_requests(-(1 if rec.item.kind is SourceKind.http else 2))
            else:
                # Never created: an upload URL may have expired since, so upload again.
                rec.audio_url = rec.item.source if rec.item.kind is SourceKind.http else None
        await asyncio.to_thread(self._ledger().append, events)

    async def _find_jobs(self, records: Sequence[ItemRecord]) -> dict[str, str]:
        """``media_id -> transcript id`` of the jobs created for ``records``' audio_urls.

        Pages newest first, stopping at jobs created before the earliest ``submitting`` event
        (less a clock-skew margin): a few list pages, not the account's history.
        """
        by_url = {comparable_url(r.audio_url): r for r in records if r.audio_url}
        oldest = min(
            (r.submitting_at for r in records if r.submitting_at),
            default=dt.datetime.now(dt.UTC),
        )
        found: dict[str, str] = {}
        floor = oldest - _LOOKUP_SKEW
        async for page in self.client.iter_transcript_pages(limit=200):
            created: dt.datetime | None = None
            for listed in page.transcripts:
                created = _listed_at(listed.created)
                rec = by_url.get(comparable_url(listed.audio_url))
                if rec is None or rec.item.media_id in found:
                    continue
                since = (rec.submitting_at or oldest) - _LOOKUP_SKEW
                if created is None or created >= since:
                    found[rec.item.media_id] = listed.id
            if len(found) == len(by_url) or (created is not None and created < floor):
                break
        return found

    # --- stages -------------------------------------------------------------------------------

    async def upload(self, media_ids: Sequence[str]) -> list[str]:
        """Upload local and S3 media (http sources pass through: AssemblyAI fetches them)."""
        todo = [
            m
            for m in media_ids
            if self._pending(m) and not self.records[m].audio_url and not self._stopped()
        ]
        await _each(todo, self._upload_one)
        self._progress("upload", len(todo))
        return [m for m in media_ids if self._pending(m) and self.records[m].audio_url]

    async def submit(self, media_ids: Sequence[str]) -> list[str]:
        """Submit, with ``submitting`` durable in the ledger before each request goes out."""
        todo = [m for m in media_ids if self._pending(m) and self.records[m].transcript_id is None]
        if todo and not self._stopped():
            self._ledger().check_lease()
            now = dt.datetime.now(dt.UTC)
            intents = []
            for m in todo:
                rec = self.records[m]
                rec.submitting_at = now
                intents.append(Event(rec.item, Status.submitting, audio_url=rec.audio_url, at=now))
            await asyncio.to_thread(self._ledger().append, intents)
            await _each(todo, self._submit_one)
            receipts = [
                Event(self.records[m].item, Status.submitted, transcript_id=tid)
                for m in todo
                if (tid := self.records[m].transcript_id)
            ]
            await asyncio.to_thread(self._ledger().append, receipts)
        self._progress("submit", len(todo))
        return [m for m in media_ids if self._pending(m) and self.records[m].transcript_id]

    async def wait(self, media_ids: Sequence[str]) -> list[str]:
        """Wait until each submitted transcript is final; returns the ids ready to collect."""
        by_tid = {
            tid: m for m in media_ids if self._pending(m) and (tid := self.records[m].transcript_id)
        }
        if not by_tid:
            return []
        # A job this run submitted is rarely done within poll_first_s (AssemblyAI's usual
        # minimum turnaround); one adopted from an earlier run (resumed) may be done already.
        waiting = self._poller.wait(
            {
                tid: self.settings.poll_first_s if self.records[m].submitted_at else 0.0
                for tid, m in by_tid.items()
            }
        )
        try:
            results = await asyncio.wait_for(waiting, timeout=self.settings.poll_timeout_s)
        except TimeoutError:
            self._poller.abandon(by_tid)
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
        transcripts is never all in memory at once. Rows are committed (published, then
        recorded in the ledger) every ``commit_interval_s`` or ``commit_items``.
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
        if (
            len(self._uncommitted) >= self.settings.commit_items
            or time.monotonic() - self._last_commit >= self.settings.commit_interval_s
        ):
            await asyncio.to_thread(self._commit)
        self._progress("collect", len(todo))
        return len(todo)

    async def finish(self) -> RunSummary:
        """Record every item that has no row yet as a failure, commit everything, summarise."""
        for media_id, rec in self.records.items():
            if not rec.done:
                # A stage that returned without recording the item (or a run stopped early).
                # Losing it silently would break "every item ends as a row or a failure".
                reason = (
                    f"not processed: the run stopped ({self.fatal})"
                    if self.fatal
                    else "item was not processed to the end"
                )
                self._fail(media_id, "write", RunStoppedError(reason))
        rows = self._invalid_rows()
        with self._sink_lock:
            for media_id, source, error in rows:
                self._sink.add(media_id, None, source=source, options_hash="", error=error)
        await asyncio.to_thread(self._commit)
        with self._sink_lock:
            self._files = await asyncio.to_thread(self._sink.close)
        crashpoint("finish")
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
        lowest = sorted(confidences, key=lambda mc: mc[1])[:10]
        return RunSummary(
            total=len(self.manifest.items) + len(self.invalid),
            completed=len(completed),
            failed=len(failures),
            audio_hours=sum(r.audio_duration_s or 0.0 for r in completed) / 3600.0,
            mean_confidence=mean,
            failures=tuple(failures),
            lowest_confidence=tuple((m, c) for m, c in lowest if c is not None),
            output=self.output,
            files={table: len(files) for table, files in self._files.items()},
            elapsed_s=time.monotonic() - self._started,
            gone=sum(r.gone for r in recs),
            fatal=str(self.fatal) if self.fatal else None,
            requests=self.client.requests_sent,
            no_words=sum(r.no_words for r in completed),
            # Gone jobs are said apart, once, with the same command (the CLI's "could not be
            # resumed" line).
            retry_failed_ids=(
                *self._skipped_failed,
                *(r.item.media_id for r in recs if r.job_failed and not r.gone),
            ),
            **self.counts,
        )

    # --- one item -----------------------------------------------------------------------------

    async def _upload_one(self, media_id: str) -> None:
        rec = self.records[media_id]
        item = rec.item
        if item.kind is SourceKind.http:
            rec.audio_url = item.source
            return
        async with self._uploads:
            if self._stopped():
                return
            try:
                if item.kind is SourceKind.s3:
                    # Streamed from S3 into the upload, or presigned (voxlake.sources); the
                    # object's size and ETag come from resolving the manifest.
                    rec.audio_url = await stage_s3(self.client, _object_info(item), self.s3)
                else:
                    with open(item.source, "rb") as f:
                        uploaded = await self.client.upload(f, size=item.size)
                    rec.audio_url = uploaded.upload_url
            except (VoxlakeError, OSError) as exc:
                self._fail(media_id, "upload", exc)
                return
        crashpoint("upload")

    async def _submit_one(self, media_id: str) -> None:
        rec = self.records[media_id]
        # submit() only passes items that have one: uploaded, or an http(s) source.
        assert rec.audio_url is not None
        params = rec.item.options.request(rec.audio_url)
        try:
            async with self._requests:
                if self._stopped():
                    return
                transcript_id = await self._submit_without_paying_twice(rec, params)
        except VoxlakeError as exc:
            self._fail(media_id, "submit", exc)
            return
        crashpoint("after_submit")
        # The id is the receipt for a paid job: from here on, never submit this item again.
        rec.transcript_id = transcript_id
        rec.submitted_at = dt.datetime.now(dt.UTC)

    async def _submit_without_paying_twice(self, rec: ItemRecord, params: TranscriptParams) -> str:
        """Submit; after any failure that may have created the job, look it up before retrying.

        The client retries a create only when no job can exist (a 429, a connection never
        made). Any other failure (a reset or read error after sending, 500/502/503/504) is an
        unknown outcome, however many attempts came before: the job is looked up by its
        audio_url in the list endpoint and adopted if it exists; only when it certainly does
        not is the create sent again.
        """
        for attempt in range(1, self.settings.submit_rounds + 1):
            try:
                return (await self.client.create_transcript(params)).id
            except VoxlakeError as exc:
                if not _outcome_unknown(exc):
                    raise
                unknown = exc
            found = await self._find_jobs([rec])
            if rec.item.media_id in found:
                tid = found[rec.item.media_id]
                logger.info("%s: adopted job %s after %s", rec.item.media_id, tid, unknown)
                return tid
            logger.info(
                "%s: no job was created by the failed submit (%s); submitting again",
                rec.item.media_id,
                unknown,
            )
            await asyncio.sleep(min(30.0, 0.5 * 2**attempt))  # backoff before the next create
        raise SubmitOutcomeUnknownError(
            f"the submit of {rec.item.media_id} failed {self.settings.submit_rounds} times "
            f"({unknown}) and its job could not be confirmed; rerun: the next run looks the "
            "job up by its upload URL before submitting anything"
        )

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
            (rec.item.media_id, transcript, self._row_fields(rec)) for rec, transcript in group
        ]
        errors = await asyncio.to_thread(self._add_locked, entries)
        for (rec, transcript), error in zip(group, errors, strict=True):
            if error is not None:
                # Its rows could not be built (a malformed transcript), so none were written:
                # it gets an error row like any failed item, and its neighbours' rows stand.
                self._fail(rec.item.media_id, "write", error)
                continue
            duration = (
                float(transcript.audio_duration) if transcript.audio_duration is not None else None
            )
            if transcript.status is TranscriptStatus.completed:
                rec.status = "completed"
                # A transcript with no words (silence) has a confidence of 0 that says nothing
                # about the recognition: it stays out of the means and the lowest confidences.
                rec.no_words = not transcript.words
                rec.confidence = None if rec.no_words else transcript.confidence
                rec.audio_duration_s = duration
                event = Event(
                    rec.item,
                    Status.completed,
                    transcript_id=transcript.id,
                    audio_duration_s=duration,
                )
            else:
                rec.status = "error"
                rec.failed_stage = "poll"
                rec.job_failed = True
                # The error text may quote a presigned audio_url: its query string is removed.
                rec.error = (
                    redact_text(transcript.error) or "transcript failed without an error message"
                )
                logger.warning("%s failed at poll: %s", rec.item.media_id, rec.error)
                event = Event(
                    rec.item,
                    Status.job_failed,
                    transcript_id=transcript.id,
                    stage="poll",
                    error=rec.error,
                )
            with self._sink_lock:
                self._uncommitted.append(event)

    def _row_fields(self, rec: ItemRecord) -> _RowFields:
        return {
            "source": rec.item.source,
            "options_hash": rec.item.options_hash,
            "source_size": rec.item.size,
            "source_fingerprint": rec.item.fingerprint,
            "submitted_at": rec.submitted_at,
            "completed_at": rec.completed_at,
        }

    def _add_locked(self, entries: Sequence[SinkEntry]) -> list[Exception | None]:
        # Runs in a worker thread: building and writing batches is CPU and disk bound, and must
        # not stall the event loop that drives hundreds of requests.
        with self._sink_lock:
            return self._sink.add_many(entries)

    def _commit(self) -> None:
        """Publish every buffered row, then tell the ledger (worker thread).

        In this order, a crash in between leaves rows the ledger does not know about: the next
        run fetches those transcripts again (free) and writes them again, and the current view
        shows each item once. The other order could mark an item done with no rows.
        """
        with self._sink_lock:
            self._sink.flush()
            events, self._uncommitted = self._uncommitted, []
        crashpoint("write")
        self._ledger().append(events)
        self._last_commit = time.monotonic()

    def _progress(self, stage: str, n: int) -> None:
        if self._on_progress is not None:
            self._on_progress(stage, n)

    def fail_pending(self, media_ids: Iterable[str], stage: Stage, exc: BaseException) -> None:
        """Record every still-pending item of a chunk whose stage failed for good."""
        for media_id in media_ids:
            if self._pending(media_id):
                self._fail(media_id, stage, exc)

    # --- bookkeeping --------------------------------------------------------------------------

    def _ledger(self) -> Ledger:
        if self.ledger is None:
            raise RuntimeError("use TranscriptionRun as `async with`")
        return self.ledger

    def _pending(self, media_id: str) -> bool:
        return not self.records[media_id].done

    def _stopped(self) -> bool:
        """True once the run must send nothing more (API key refused, lease lost)."""
        if self.fatal is None and self.ledger is not None and self.ledger.lease_lost():
            self.fatal = LeaseLostError(
                "another run took over the output root's lease; rerun to finish this one"
            )
        return self.fatal is not None

    def _fail(self, media_id: str, stage: Stage, exc: BaseException) -> None:
        rec = self.records[media_id]
        rec.status = "error"
        rec.failed_stage = stage
        if rec.origin == "resume" and isinstance(exc, NotFoundError):
            # The job an earlier run submitted is gone from the server (deleted, or a local
            # server that lost its state): said once for all of them in the summary (gone).
            exc = JobGoneError(f"job {rec.transcript_id} no longer exists on the server")
            rec.gone = True
        rec.error = redact_text(f"{stage}: {exc}")  # never a presigned URL's signature
        if not rec.gone:
            logger.warning("%s failed at %s", media_id, rec.error)
        if _stops_the_run(exc) and self.fatal is None:
            self.fatal = exc if isinstance(exc, VoxlakeError) else VoxlakeError(str(exc))
        if stage == "upload":
            self.client.reserve_requests(-1)  # its submit will never be sent
        # The item leaves the pipeline here: count it through the stages it will never reach.
        for later in _PROGRESS_STAGES[_PROGRESS_STAGES.index(_progress_stage(stage)) + 1 :]:
            self._progress(later, 1)
        event = _failure_event(rec, stage, exc)
        rec.job_failed = event is not None and event.status is Status.job_failed
        with self._sink_lock:
            self._sink.add(
                media_id,
                None,
                error=rec.error,
                transcript_id=rec.transcript_id,
                **self._row_fields(rec),
            )
            if event is not None:
                self._uncommitted.append(event)

    def _invalid_rows(self) -> list[tuple[str, str, str]]:
        """(media_id, source, error) of each skipped manifest row, with a media_id of its own.

        A row without a usable id, or whose id another row already has (a duplicate), is named
        after its row number so every manifest row stays exactly one ``transcripts`` row.
        """
        taken = {i.media_id for i in self.manifest.items}
        rows = []
        for inv in self.invalid:
            media_id = inv.media_id
            if media_id is None or media_id in taken:
                media_id = f"{inv.media_id or 'manifest'}@row{inv.row}"
            taken.add(media_id)
            rows.append((media_id, inv.source or "", f"manifest row {inv.row}: {inv.reason}"))
        return rows


def _failure_event(rec: ItemRecord, stage: Stage, exc: BaseException) -> Event | None:
    """The ledger event of a failure, or None when the item stays in flight for the next run.

    No job exists after an upload error or a certainly refused submit (``failed``: retried free
    next run). A job whose outcome or result is still to be learned (an unknown submit, a poll
    timeout, a fetch error, a run that stopped) keeps its ``submitting``/``submitted`` state,
    so the next run resumes it instead of paying again. A job that ended in error, or whose
    rows cannot be built, is ``job_failed``: resubmitted only with ``--retry-failed``.
    """
    if isinstance(exc, _STAYS_IN_FLIGHT) or _stops_the_run(exc):
        return None
    if stage == "fetch" and not isinstance(exc, JobGoneError):  # fetched again next run
        return None
    if rec.transcript_id is None:
        refused = stage == "submit" and isinstance(exc, VoxlakeError) and not _outcome_unknown(exc)
        if rec.submitting_at is not None and not refused:
            return None  # a create may have gone out: the next run looks the job up first
        return Event(rec.item, Status.failed, stage=stage, error=rec.error)
    return Event(
        rec.item, Status.job_failed, transcript_id=rec.transcript_id, stage=stage, error=rec.error
    )


class RunStoppedError(VoxlakeError):
    """An item the run did not finish (it stopped early, or a stage gave up on it)."""


_STAYS_IN_FLIGHT = (SubmitOutcomeUnknownError, PollTimeoutError, LeaseLostError, RunStoppedError)


def _stops_the_run(exc: BaseException) -> bool:
    """A refused API key or a lost lease: every further request would fail (or pay twice)."""
    if isinstance(exc, LeaseLostError | AuthenticationError):
        return True
    return isinstance(exc, ForbiddenError) and not isinstance(exc, UploadAccessError)


def _outcome_unknown(exc: VoxlakeError) -> bool:
    """After a failed create: may the job exist? Only a 429 and a connection that was never
    made are certain refusals; any other transient failure may have created it."""
    if isinstance(exc, RateLimitError):
        return False
    if isinstance(exc, NetworkError) and not exc.request_sent:
        return False
    return isinstance(exc, ServerError | NetworkError)


def _longest_first(items: Iterable[MediaItem]) -> list[MediaItem]:
    # Longest jobs first (size ~ duration): the server's FIFO queue then ends on short jobs, so
    # the last slots free up together (LPT scheduling). Sizes come from resolving the manifest.
    return sorted(items, key=lambda i: i.size or 0, reverse=True)


def _object_info(item: MediaItem) -> ObjectInfo:
    info = item.info
    if info is None:  # resolving always fills it for S3 rows; be explicit if it did not
        raise VoxlakeError(f"{item.source}: no object metadata from resolving the manifest")
    return ObjectInfo(item.source, info.size, info.etag, info.modified_at)


def _listed_at(value: str | None) -> dt.datetime | None:
    # AssemblyAI's list timestamps carry no zone and are UTC.
    try:
        parsed = dt.datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed


def preload_report() -> None:
    """Load what :func:`write_run_report` needs (DuckDB, matplotlib, its fonts), so that a run
    can do it while it waits for its last jobs. Failures are left for the report to report."""
    with contextlib.suppress(Exception):
        from voxlake.analytics_report import preload

        preload()


def write_run_report(output: str, run_id: str, s3: S3Options | None = None) -> str | None:
    """Write the run's HTML report to ``<output>/reports/<run id>.html``; its path, or None.

    A report that cannot be written is logged, never a failure of the run: the tables are what
    the run owes.
    """
    from voxlake.analytics_report import write_report

    filesystem, _ = output_filesystem(output, s3)
    target = f"{output.rstrip('/')}/reports/{run_id}.html"
    try:
        return write_report(output, out=target, run_id=run_id, filesystem=filesystem)
    except Exception as exc:  # plotting or reading problems must not fail a finished run
        logger.warning("the run's report could not be written: %s", exc)
        return None


async def _each(media_ids: Sequence[str], fn: Callable[[str], Awaitable[None]]) -> None:
    """Run ``fn`` for every id concurrently; each fn records its own failures."""
    if media_ids:
        await asyncio.gather(*(fn(m) for m in media_ids))


def chunked(ids: Sequence[str], chunk_size: int) -> list[list[str]]:
    return [list(ids[i : i + chunk_size]) for i in range(0, len(ids), chunk_size)]


def plan_chunks(ids: Sequence[str], chunk_size: int | None, max_uploads: int) -> list[list[str]]:
    """The run's chunks, in order: ``chunk_size`` ids each (default :func:`auto_chunk_size`).

    Unless ``chunk_size`` is given, the first chunk is one round of uploads (``max_uploads``):
    the server then starts working after one round instead of a whole chunk (~0.5 s sooner
    for B1's chunks of 80), and a run lasts the server's work plus that delay.
    """
    size = chunk_size or auto_chunk_size(len(ids))
    first = size if chunk_size else min(size, max_uploads)
    return chunked(ids[:first], first) + chunked(ids[first:], size)


def auto_chunk_size(n_items: int, *, max_task_runs: int = 100, stages: int = 4) -> int:
    """One item per task run for small manifests; bigger chunks keep task runs bounded.

    A Prefect server records only tens of task runs per second, so a run of N items
    with 4 tasks per chunk costs ``4 * N / chunk_size`` task runs. Up to ``max_task_runs`` the
    UI shows one task run per item and stage; beyond it chunks grow to keep that bound.
    """
    if n_items * stages <= max_task_runs:
        return 1
    return max(1, math.ceil(n_items * stages / max_task_runs))
