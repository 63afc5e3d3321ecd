"""One transcription run: the stages composed, independent of Prefect.

:class:`TranscriptionRun` owns everything a run shares (:class:`~voxlake.run.state.RunState`):
the async client (one connection pool), the batch status poller, the table sink and the
per-item records. Its stage methods take a chunk of media ids and return the ids that advanced;
every failure is recorded on the item, never raised (:mod:`voxlake.run.failures`), so one bad
item cannot fail its neighbours::

    enter ─▶ start() ─▶ upload(ids) ─▶ submit(ids) ─▶ wait(ids) ─▶ collect(ids) ─▶ finish()
    [plan]   [submit]    [upload]       [submit]       [poll]      [collect]        [load]
    ledger,  key check,  local / S3     (request)      (batched    fetch, normalise, RunSummary
    budget   unknowns,   media                         list polls) load (Parquet),  [summary]
             [delete]                                              [delete]         [delete]
             unfinished                                            once committed

Each stage skips items that are already past it, so calling a stage again for the same chunk
(a Prefect task retry) never uploads or submits twice. Per-request retries (429 with
Retry-After, 5xx, network) happen inside the client's RetryPolicy and nowhere else; an error
that reaches a record has already had its retries. A new stage is a new module of functions
over the run's state, and a method here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from voxlake.client import AssemblyAIClient
from voxlake.crashpoints import crashpoint
from voxlake.lake.ledger import Ledger
from voxlake.manifest import InvalidRow, Manifest
from voxlake.polling import SharedPoller
from voxlake.run import collect, delete, load, plan, poll, submit, upload
from voxlake.run.collector import write_run_note
from voxlake.run.failures import RunStoppedError, fail, fail_pending
from voxlake.run.notified import RunWebhook
from voxlake.run.progress import ProgressCallback, ProgressCounter
from voxlake.run.state import ItemRecord, PlanCounts, RunSettings, RunState, Stage
from voxlake.run.summary import RunSummary, summarise
from voxlake.storage import S3Options


class TranscriptionRun:
    """State and stages of one run. Use as ``async with``; call :meth:`finish` at the end.

    Entering opens the output root's ledger (writability probe, lease, stale temp files), plans
    every manifest item against it (new, resume, skip) and applies the audio budget; nothing is
    requested from AssemblyAI before :meth:`start`. ``on_progress``
    (:data:`~voxlake.run.progress.ProgressCallback`) hears a
    :class:`~voxlake.run.progress.Progress` as items pass each stage, e.g. to draw progress bars;
    it is called on the run's event loop, so it must be quick.
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
        delete_after_collect: bool = False,
        on_progress: ProgressCallback | None = None,
        webhook: RunWebhook | None = None,
        detach: bool = False,
    ) -> None:
        self.detach = detach
        self.state = RunState(
            manifest,
            str(output),
            client=client,
            flow_run_id=flow_run_id,
            settings=settings or RunSettings(),
            s3=s3,
            progress=ProgressCounter(on_progress),
            webhook=webhook,
        )
        self.state.delete_after_collect = delete_after_collect
        self._force, self._retry_failed = force, retry_failed
        self._max_audio_hours = max_audio_hours
        self._lease_group = lease_group
        self._run_date = run_date or dt.datetime.now(dt.UTC).date()
        self._started = time.monotonic()
        self._files: dict[str, int] = {}
        self._rows: dict[str, int] = {}
        self._held: int | None = None  # transcripts still at AssemblyAI, once counted

    async def __aenter__(self) -> TranscriptionRun:
        state = self.state
        ledger = await asyncio.to_thread(
            Ledger.open,
            state.root,
            run_id=state.flow_run_id,
            lease_group=self._lease_group,
        )
        state.opened_ledger = ledger
        try:
            load.open_sink(state, self._run_date)
            await plan.plan(
                state,
                force=self._force,
                retry_failed=self._retry_failed,
                max_audio_hours=self._max_audio_hours,
            )
            if self.detach and state.records:
                # What the receiver's collector does for these jobs besides their rows.
                await asyncio.to_thread(
                    write_run_note,
                    state.root,
                    state.flow_run_id,
                    state.settings.extras,
                    state.delete_after_collect,
                )
        except BaseException:
            ledger.close()
            raise
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        state = self.state
        await state.poller.aclose()
        if exc_type is not None:
            with state.sink_lock:
                state.sink.__exit__(exc_type, exc, tb)
        if state.opened_ledger is not None:
            await asyncio.to_thread(state.opened_ledger.close)

    @property
    def records(self) -> dict[str, ItemRecord]:
        return self.state.records

    @property
    def counts(self) -> PlanCounts:
        return self.state.counts

    @property
    def invalid(self) -> list[InvalidRow]:
        return self.state.invalid

    @property
    def media_ids(self) -> list[str]:
        return list(self.state.records)

    def media_ids_longest_first(self) -> list[str]:
        """Local and S3 media by size, largest first; items resumed from an earlier run first."""
        return plan.longest_first(self.state)

    async def start(self) -> None:
        """Check the API key with one request, then settle the jobs earlier runs left unknown.

        A refused key stops the run here, after exactly one failing request and before any
        upload (raises :class:`~voxlake.errors.AuthenticationError`). A run with nothing to do
        sends nothing.
        """
        if self.state.records:
            await submit.check_key(self.state)
            await submit.resolve_unknown(self.state)
        # Deletions an earlier run asked for and did not do: its transcripts' rows are durable.
        await delete.unfinished(self.state)

    async def upload(self, media_ids: Sequence[str]) -> list[str]:
        """Upload local and S3 media (http sources pass through: AssemblyAI fetches them)."""
        return await upload.upload(self.state, media_ids)

    async def submit(self, media_ids: Sequence[str]) -> list[str]:
        """Submit, with ``submitting`` durable in the ledger before each request goes out."""
        return await submit.submit(self.state, media_ids)

    async def wait(self, media_ids: Sequence[str]) -> list[str]:
        """Wait until each submitted transcript is final; returns the ids ready to collect."""
        return await poll.wait(self.state, media_ids)

    async def collect(self, media_ids: Sequence[str]) -> int:
        """Fetch each final transcript once and write its rows. Returns the items written."""
        return await collect.collect(self.state, media_ids)

    def job_ended(self) -> None:
        """The server says one of its jobs ended (the embedded default, in this process): the
        poll stage looks soon instead of on its schedule. Thread-safe."""
        if isinstance(self.state.poller, SharedPoller):
            self.state.poller.nudge()

    def fail_pending(self, media_ids: Iterable[str], stage: Stage, exc: BaseException) -> None:
        """Record every still-pending item of a chunk whose stage failed for good."""
        fail_pending(self.state, media_ids, stage, exc)

    async def finish(self) -> RunSummary:
        """Record every item that has no row yet as a failure, commit everything, summarise."""
        state = self.state
        for media_id, rec in state.records.items():
            if self.detach and rec.transcript_id and not rec.done and not state.fatal:
                # Submitted and left running: the ledger keeps it `submitted`, and the next
                # run resumes it (summary: detached). Not a failure.
                continue
            if not rec.done:
                # A stage that returned without recording the item (or a run stopped early).
                # Losing it silently would break "every item ends as a row or a failure".
                reason = (
                    f"not processed: the run stopped ({state.fatal})"
                    if state.fatal
                    else "item was not processed to the end"
                )
                fail(state, media_id, "write", RunStoppedError(reason))
        load.add_invalid_rows(state, plan.invalid_rows(state))
        files = await load.close(state)
        self._files = {table: len(written) for table, written in files.items()}
        self._rows = {table: sum(f.rows for f in written) for table, written in files.items()}
        await delete.due(state)
        if state.delete_after_collect or state.deleted or state.delete_failures:
            self._held = len((await asyncio.to_thread(state.ledger.held)).transcripts)
        crashpoint("finish")
        return self.summary()

    def summary(self) -> RunSummary:
        return summarise(
            self.state,
            files=self._files,
            rows=self._rows,
            elapsed_s=time.monotonic() - self._started,
            detached=self.detach,
            held=self._held,
        )
