"""What the stages of one run share: its settings, its items' records, the client, the ledger,
the table sink and the progress counter (:class:`RunState`).

Each stage module (:mod:`~voxlake.run.plan`, :mod:`~voxlake.run.upload`,
:mod:`~voxlake.run.submit`, :mod:`~voxlake.run.poll`, :mod:`~voxlake.run.collect`) is a set of
functions over a :class:`RunState`; :class:`voxlake.run.transcription.TranscriptionRun` owns
the state and composes them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from voxlake.client import AssemblyAIClient, SubtitleFormat
from voxlake.errors import VoxlakeError
from voxlake.lake.ledger import Event, LeaseLostError, Ledger
from voxlake.lake.root import OutputRoot
from voxlake.lake.writer import TableSink
from voxlake.manifest import InvalidRow, Manifest, MediaItem
from voxlake.polling import SharedPoller
from voxlake.run.notified import CHECK_S, NotifiedWaiter, RunWebhook
from voxlake.run.progress import ProgressCounter
from voxlake.settings import settings
from voxlake.storage import S3Options

#: Where an item failed ("manifest": an invalid row; "fetch", "write": in collect).
Stage = Literal["manifest", "upload", "submit", "poll", "fetch", "write"]


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
class DeleteFailure:
    """A transcript the run could not delete at AssemblyAI: still held (docs/ledger.md)."""

    media_id: str
    transcript_id: str
    error: str


class PlanCounts(TypedDict, total=False):
    """How the ledger planned the run's items (the RunSummary fields of the same names)."""

    new: int
    retried: int
    resumed: int
    skipped: int
    skipped_failed: int
    deferred: int


@dataclass(frozen=True)
class Extras:
    """What a run fetches for each completed transcript besides its JSON
    (:mod:`voxlake.run.extras`): one request per caption format, and per table asked for."""

    captions: tuple[SubtitleFormat, ...] = ()
    chars_per_caption: int | None = None  # None: AssemblyAI's default
    sentences: bool = False
    paragraphs: bool = False

    @classmethod
    def of(
        cls,
        captions: Sequence[SubtitleFormat] | None,
        chars_per_caption: int | None,
        sentences: bool,
        paragraphs: bool,
    ) -> Extras:
        # dict.fromkeys: "srt,srt" fetches srt once.
        return cls(tuple(dict.fromkeys(captions or ())), chars_per_caption, sentences, paragraphs)

    def __bool__(self) -> bool:
        return bool(self.captions) or self.sentences or self.paragraphs

    @property
    def tables(self) -> tuple[str, ...]:
        """The optional tables asked for (voxlake.lake.tables.OPTIONAL)."""
        asked = (("sentences", self.sentences), ("paragraphs", self.paragraphs))
        return tuple(name for name, on in asked if on)


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
    # Webhook mode: seconds between two looks for notifications (voxlake.run.notified).
    notification_check_s: float = CHECK_S
    # Looking a job up by audio_url after an unknown create: rounds before giving up (the
    # ledger keeps `submitting`, so the next run looks again before it resubmits).
    submit_rounds: int = 4
    extras: Extras = field(default_factory=Extras)


class RunState:
    """The state one run's stages share. Built by ``TranscriptionRun``; the ledger and the
    sink are set when it is entered."""

    def __init__(
        self,
        manifest: Manifest,
        output: str,
        *,
        client: AssemblyAIClient,
        flow_run_id: str,
        settings: RunSettings,
        s3: S3Options | None,
        progress: ProgressCounter,
        webhook: RunWebhook | None = None,
    ) -> None:
        self.manifest = manifest
        self.invalid: list[InvalidRow] = list(manifest.invalid)
        self.output = output
        self.client = client
        self.flow_run_id = flow_run_id
        self.settings = settings
        self.s3 = s3  # non-secret S3 options: endpoint, region, profile, presign
        # Resolved once (no I/O): the ledger checks its bucket, the sink writes under it.
        self.root = OutputRoot.of(output, s3=s3)
        self.progress = progress
        self.records: dict[str, ItemRecord] = {}
        self.counts: PlanCounts = {}
        self.skipped_failed: list[str] = []  # media ids whose job failed in an earlier run
        self.fatal: VoxlakeError | None = None
        self.opened_ledger: Ledger | None = None
        self.opened_sink: TableSink | None = None
        # The sink is not thread-safe and its writes run in worker threads (they are CPU and
        # disk bound, and must not stall the event loop that drives hundreds of requests).
        self.sink_lock = threading.Lock()
        self.uncommitted: list[Event] = []  # ledger events of rows not yet published
        # --delete-after-collect: each committed transcript's `deleting` event waits here for
        # the delete stage (voxlake.run.delete), which records what became of it.
        self.delete_after_collect = False
        self.to_delete: list[Event] = []
        self.deleted = 0
        self.delete_failures: list[DeleteFailure] = []
        self.captions_written = 0  # caption files published (voxlake.run.extras)
        self.last_commit = time.monotonic()
        self.uploads = asyncio.Semaphore(settings.max_uploads)
        self.requests = asyncio.Semaphore(settings.max_requests)
        self.webhook = webhook
        self.poller: SharedPoller | NotifiedWaiter
        if webhook is None:
            self.poller = SharedPoller(
                client,
                min_interval_s=settings.poll_min_interval_s,
                max_interval_s=settings.poll_max_interval_s,
                tail_interval_s=settings.poll_tail_interval_s,
                tail_max_interval_s=max(settings.poll_tail_interval_s, 2.5 * settings.poll_first_s),
                tail_finds=settings.poll_tail_finds,
            )
        else:
            # Webhook mode: notifications first; the same poller, slowed down to one round
            # every safety_poll_s, only for the jobs whose notification did not come.
            slow = webhook.safety_poll_s
            self.poller = NotifiedWaiter(
                output,
                s3,
                SharedPoller(
                    client, min_interval_s=slow, max_interval_s=slow, tail_interval_s=slow
                ),
                safety_poll_s=slow,
                resumed_first_poll_s=settings.poll_first_s,
                check_s=settings.notification_check_s,
            )

    @property
    def ledger(self) -> Ledger:
        if self.opened_ledger is None:
            raise RuntimeError("use TranscriptionRun as `async with`")
        return self.opened_ledger

    @property
    def sink(self) -> TableSink:
        if self.opened_sink is None:
            raise RuntimeError("use TranscriptionRun as `async with`")
        return self.opened_sink

    def pending(self, media_id: str) -> bool:
        return not self.records[media_id].done

    def stopped(self) -> bool:
        """True once the run must send nothing more (API key refused, lease lost)."""
        if (
            self.fatal is None
            and self.opened_ledger is not None
            and self.opened_ledger.lease_lost()
        ):
            self.fatal = LeaseLostError(
                "another run took over the output root's lease; rerun to finish this one"
            )
        return self.fatal is not None


async def each(media_ids: Sequence[str], fn: Callable[[str], Awaitable[None]]) -> None:
    """Run ``fn`` for every id concurrently; each fn records its own failures."""
    if media_ids:
        await asyncio.gather(*(fn(m) for m in media_ids))
