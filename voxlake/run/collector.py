"""The receiver's collector: detached jobs collected as their notifications land, no run needed.

``voxlake run --detach`` (webhook mode) submits and returns, leaving its jobs ``submitted`` in
the ledger. With ``--collect``, the receiver (``voxlake webhooks OUTPUT --collect``, or
``voxlake serve --webhooks OUTPUT --webhook-collect``) collects each of them once its
notification is recorded: one ``GET`` per job, the rows and the ledger's outcome committed by
the run's own collect and load stages (:mod:`voxlake.run.collect`, :mod:`voxlake.run.load`:
rows published, then the ledger told), then the notification acknowledged. Nothing is ever
uploaded or submitted here, and no status is polled: a notification says the job is final.

A round (:meth:`Collector.collect_once`) runs when a notification is recorded, and every
``recheck_s`` while notifications are pending. It takes the output root's lease like a run, for
the few seconds of its commit; when a run holds it, the round is skipped (that run collects its
own jobs, or the next round does). A pending notification is:

- of a job the ledger has ``submitted`` under that transcript id: collected;
- of a job the ledger shows past that (collected by a run or an earlier round, failed,
  deleted, or submitted again under another id): acknowledged, nothing fetched (a duplicate);
- of a transcript the ledger does not know: left pending. The detached run may not have
  recorded its ``submitted`` yet (a fast job notifies within a second of its create); the next
  round looks again.

What the detached run asked for besides the rows (captions, sentences, paragraphs,
``--delete-after-collect``) is read from the note it left for the collector
(:func:`write_run_note`), keyed by the run id of the job's ``submitted`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from voxlake.client import AssemblyAIClient, SubtitleFormat
from voxlake.errors import VoxlakeError
from voxlake.lake.ledger import LeaseHeldError, Ledger, Status
from voxlake.lake.ledger.events import RECORDED_COLUMNS, RecordedItem, safe_name
from voxlake.lake.root import OutputRoot
from voxlake.manifest import Manifest, MediaItem, SourceInfo, SourceKind, TranscriptionOptions
from voxlake.run import collect, delete, load
from voxlake.run.progress import ProgressCounter
from voxlake.run.state import Extras, ItemRecord, RunSettings, RunState
from voxlake.storage import S3Options

__all__ = ["RECHECK_S", "Collector", "RoundResult", "RunNote", "write_run_note"]

log = logging.getLogger(__name__)

#: Seconds between two rounds while notifications are pending and none arrives (a job whose
#: ``submitted`` was not recorded yet, a run holding the lease, a failed GET).
RECHECK_S = 5.0
#: What a detached run leaves for the collector, relative to the output root.
RUN_NOTES_DIR = "_webhooks/runs"

_COLUMNS = [*RECORDED_COLUMNS, "audio_url", "run_id"]


class RunNote(BaseModel):
    """What a detached run asked for besides the rows: the collector does the same."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    captions: tuple[SubtitleFormat, ...] = ()
    chars_per_caption: int | None = None
    sentences: bool = False
    paragraphs: bool = False
    delete_after_collect: bool = False

    def extras(self) -> Extras:
        return Extras.of(self.captions, self.chars_per_caption, self.sentences, self.paragraphs)


def _note_path(run_id: str) -> str:
    return f"{RUN_NOTES_DIR}/{safe_name(run_id)}.json"


def write_run_note(
    root: OutputRoot, run_id: str, extras: Extras, delete_after_collect: bool
) -> None:
    """Leave the collector a detached run's collect options (before its first submit)."""
    note = RunNote(
        captions=extras.captions,
        chars_per_caption=extras.chars_per_caption,
        sentences=extras.sentences,
        paragraphs=extras.paragraphs,
        delete_after_collect=delete_after_collect,
    )
    root.publish_bytes(_note_path(run_id), note.model_dump_json().encode())


def _read_run_note(root: OutputRoot, run_id: str) -> RunNote:
    """The note of ``run_id``; the defaults (rows only) for a run that left none (not detached:
    a webhook run that crashed, whose jobs the collector finishes)."""
    try:
        with root.open_input_file(_note_path(run_id)) as f:
            data = f.read()
    except FileNotFoundError:
        return RunNote()
    return RunNote.model_validate_json(data)


@dataclass(frozen=True, slots=True)
class _Recorded(MediaItem):
    """An item as the ledger recorded it, in the shape the stages take. Only the stages after
    submit see it (collect, normalise, load, delete): they read its media id, source, size,
    fingerprint and options hash, all recorded. Its options are not (the ledger keeps their
    hash): ``options`` is a placeholder that nothing here submits, and ``options_hash`` the
    recorded one, so its events land under the item's key."""

    recorded_options_hash: str = ""

    @property
    def options_hash(self) -> str:
        return self.recorded_options_hash

    @classmethod
    def of(cls, item: RecordedItem) -> _Recorded:
        source = item.source
        kind = (
            SourceKind.s3
            if source.startswith("s3://")
            else SourceKind.http
            if source.startswith(("http://", "https://"))
            else SourceKind.local
        )
        info = (
            SourceInfo(item.size, item.fingerprint)
            if item.size is not None and item.fingerprint is not None
            else None
        )
        return cls(
            item.media_id,
            source,
            kind,
            TranscriptionOptions(),
            0,
            info,
            recorded_options_hash=item.options_hash,
        )


@dataclass(frozen=True, slots=True)
class _Due:
    item: RecordedItem
    transcript_id: str
    audio_url: str | None
    run_id: str  # the run that submitted it


@dataclass
class RoundResult:
    """What one round did."""

    collected: list[str] = field(default_factory=list)  # transcript ids: rows committed
    acknowledged: int = 0  # notifications removed (collected, or done before)
    waiting: int = 0  # notifications left pending (unknown yet, or a failed GET)
    busy: bool = False  # a run held the lease: nothing done


def _classify(events: pa.Table, wanted: set[str]) -> tuple[list[_Due], set[str]]:
    """The jobs to collect among ``wanted`` transcript ids, and the ids done with (the ledger
    shows their item past them). ``events`` in log order."""
    tids = events["transcript_id"]
    hit = pc.fill_null(pc.is_in(tids, value_set=pa.array(sorted(wanted), pa.string())), False)
    keys = pc.unique(events["item_key"].filter(hit))
    if not len(keys):
        return [], set()
    rows = events.filter(pc.is_in(events["item_key"], value_set=keys)).to_pylist()
    latest: dict[str, dict[str, object]] = {}
    seen: set[str] = set()  # wanted ids that some event of these items names
    for row in rows:  # oldest first: the last one wins
        latest[str(row["item_key"])] = row
        if row["transcript_id"] in wanted:
            seen.add(str(row["transcript_id"]))
    due = []
    for row in latest.values():
        tid = row["transcript_id"]
        if row["status"] == Status.submitted and isinstance(tid, str) and tid in wanted:
            item = RecordedItem.of_event(row)
            audio_url = row["audio_url"]
            due.append(
                _Due(
                    item, tid, audio_url if isinstance(audio_url, str) else None, str(row["run_id"])
                )
            )
    return due, seen - {d.transcript_id for d in due}


class Collector:
    """Collects the jobs whose notifications the receiver records (module doc).

    ``client`` makes the AssemblyAI client of a round; None until :meth:`use` gives one
    (``voxlake serve`` knows its endpoint only once its Prefect API is up): notifications are
    recorded meanwhile and collected then.
    """

    def __init__(
        self,
        output: str,
        *,
        s3: S3Options | None = None,
        client: Callable[[], AssemblyAIClient] | None = None,
        recheck_s: float = RECHECK_S,
    ) -> None:
        from voxlake.webhooks import NotificationStore

        self.output, self._s3 = output, s3
        self._root = OutputRoot.of(output, s3=s3)
        self._store = NotificationStore(output, s3=s3)
        self._client = client
        self._recheck_s = recheck_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._busy = False  # the last round found the lease held

    @classmethod
    def from_env(cls, output: str, *, s3: S3Options | None = None) -> Collector:
        """The collector of ``voxlake webhooks --collect``: its AssemblyAI client configured by
        ``ASSEMBLYAI_*`` as ``voxlake run``'s is; a :class:`ConfigurationError` now, before the
        receiver listens, when no key is set."""
        from voxlake.config import ClientSettings

        ClientSettings()  # type: ignore[call-arg]  # from the environment; checked here
        return cls(output, s3=s3, client=AssemblyAIClient)

    def notify(self) -> None:
        """A notification was recorded (on the receiver's event loop): a round, soon."""
        self._wake.set()

    def use(self, client: Callable[[], AssemblyAIClient]) -> None:
        """Collect with clients from ``client`` from now on (any thread)."""
        self._client = client
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Rounds until :meth:`stop`: at each notification, and every ``recheck_s`` while
        any is pending. A round's failure is logged; the next one tries again."""
        self._loop = asyncio.get_running_loop()
        self._wake.set()  # notifications recorded while nothing collected
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._recheck_s)
            self._wake.clear()
            if self._stopping or self._client is None:
                continue
            try:
                await self.collect_once()
            except VoxlakeError as exc:
                log.warning("webhook collector: %s; trying again in %g s", exc, self._recheck_s)
            except Exception:
                # A bug or an unreadable file must not end the collector unseen while the
                # receiver goes on recording: said with its traceback, tried again.
                log.exception(
                    "webhook collector: round failed; trying again in %g s", self._recheck_s
                )

    async def stop(self) -> None:
        """End :meth:`run` after the round under way (never half a commit)."""
        self._stopping = True
        self._wake.set()

    async def collect_once(self) -> RoundResult:
        """One round: collect every pending notification's job that the ledger has in flight."""
        result = RoundResult()
        notes = await asyncio.to_thread(self._store.pending)
        if not notes or self._client is None:
            return result
        run_id = f"collector-{uuid.uuid4()}"
        try:
            ledger = await asyncio.to_thread(Ledger.open, self._root, run_id=run_id, s3=self._s3)
        except LeaseHeldError:
            # A run is working on the root: its own jobs are its to collect. Said once while
            # it lasts (a webhook run may hold the lease for hours, tried every recheck_s).
            if not self._busy:
                log.info("webhook collector: a run holds the lease of %s; later", self.output)
            self._busy = True
            result.busy, result.waiting = True, len(notes)
            return result
        self._busy = False
        try:
            events = await asyncio.to_thread(ledger.read_events, _COLUMNS)
            due, done = _classify(events, {n.transcript_id for n in notes})
            if due:
                result.collected = await self._collect(ledger, run_id, due)
        finally:
            await asyncio.to_thread(ledger.close)
        acknowledged = done | set(result.collected)
        await asyncio.to_thread(self._store.acknowledge, acknowledged)
        result.acknowledged = len(acknowledged)
        result.waiting = len(notes) - len(acknowledged)
        if result.collected or done:
            log.info(
                "webhook collector: %d collected, %d notifications done with before, %d waiting",
                len(result.collected),
                len(done),
                result.waiting,
            )
        return result

    async def _collect(self, ledger: Ledger, run_id: str, due: list[_Due]) -> list[str]:
        """Collect ``due`` through the run's stages, one group per submitting run (each with
        that run's note); the transcript ids whose outcome is now committed."""
        by_run: dict[str, list[_Due]] = {}
        for d in due:
            by_run.setdefault(d.run_id, []).append(d)
        assert self._client is not None
        collected: list[str] = []
        async with self._client() as client:
            for submitter, group in by_run.items():
                note = await asyncio.to_thread(_read_run_note, self._root, submitter)
                collected += await self._collect_group(client, ledger, run_id, note, group)
        return collected

    async def _collect_group(
        self,
        client: AssemblyAIClient,
        ledger: Ledger,
        run_id: str,
        note: RunNote,
        group: Iterable[_Due],
    ) -> list[str]:
        state = RunState(
            Manifest(items=[]),
            self.output,
            client=client,
            flow_run_id=run_id,
            settings=RunSettings(extras=note.extras()),
            s3=self._s3,
            progress=ProgressCounter(),
        )
        state.opened_ledger = ledger
        state.delete_after_collect = note.delete_after_collect
        load.open_sink(state, dt.datetime.now(dt.UTC).date())
        for d in group:
            if d.item.media_id in state.records:
                continue  # two items of one media id: the other one next round
            state.records[d.item.media_id] = ItemRecord(
                _Recorded.of(d.item),
                origin="resume",
                transcript_id=d.transcript_id,
                audio_url=d.audio_url,
            )
        try:
            await collect.collect(state, list(state.records))
            await load.close(state)  # rows published, then the ledger told
            await delete.due(state)
        finally:
            await state.poller.aclose()
        if state.fatal is not None:
            raise state.fatal
        for failure in state.delete_failures:
            log.warning(
                "webhook collector: %s (%s) not deleted at AssemblyAI: %s; the next run or "
                "voxlake purge deletes it",
                failure.media_id,
                failure.transcript_id,
                failure.error,
            )
        # Collected, or failed for good (the ledger has its outcome); a failed GET stays
        # pending and is fetched again next round.
        return [
            r.transcript_id
            for r in state.records.values()
            if r.transcript_id and (r.status == "completed" or r.job_failed)
        ]
