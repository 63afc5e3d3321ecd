"""The run's outcome (:class:`RunSummary`), as the CLI prints it and Prefect artifacts show it."""

from __future__ import annotations

from dataclasses import dataclass

from voxlake.run.plan import invalid_rows
from voxlake.run.state import DeleteFailure, RunState, Stage


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

    total: int  # manifest items (valid and invalid rows)
    completed: int  # completed by this run
    failed: int
    audio_hours: float
    mean_confidence: float | None
    failures: tuple[Failure, ...]
    lowest_confidence: tuple[tuple[str, float], ...]  # (media_id, confidence), worst first
    output: str
    files: dict[str, int]  # table -> Parquet files written by this run
    rows: dict[str, int]  # table -> rows in those files (0: just the schema)
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
    captions: int = 0  # caption files published by this run (--captions)
    # Items later runs skip because their job failed (before, or in this run): --retry-failed
    # submits them again.
    retry_failed_ids: tuple[str, ...] = ()
    # The completed items' cost at list prices, by speech model and requested feature (lines of
    # voxlake.estimate.Estimate.bill_lines), set by the flow.
    bill: tuple[str, ...] = ()
    # --detach: submitted (or resumed) and left running, for a later run to collect.
    detached: int = 0
    # Transcripts deleted at AssemblyAI by this run (--delete-after-collect, or finishing an
    # earlier run's deletions), those it could not delete, and how many collected transcripts
    # the ledger knows are still held there (None: not counted, no deletion was asked).
    deleted: int = 0
    delete_failures: tuple[DeleteFailure, ...] = ()
    held: int | None = None

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
        if self.detached:
            text += (
                f"; {self.detached} submitted, to be collected later (detached: by a "
                "receiver's collector, voxlake webhooks --collect, or by the same command again "
                "without --detach)"
            )
        if self.deleted or self.delete_failures:
            text += f"; {self.deleted} deleted at AssemblyAI"
            if self.delete_failures:
                text += f", {len(self.delete_failures)} could not be deleted"
        if self.fatal:
            text += f"; run stopped: {self.fatal}"
        if not self.failed:
            return text
        return (
            f"{text}, {self.failed} failed: "
            + ", ".join(f.media_id for f in self.failures[:10])
            + (" …" if self.failed > 10 else "")
        )


def summarise(
    state: RunState,
    *,
    files: dict[str, int],
    rows: dict[str, int],
    elapsed_s: float,
    detached: bool = False,
    held: int | None = None,
) -> RunSummary:
    """The summary of the run's records so far (``detached``: its pending jobs were left
    running on purpose; ``held``: transcripts the ledger knows are still at AssemblyAI)."""
    recs = list(state.records.values())
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
        Failure(mid, src or "", "manifest", err, None) for mid, src, err in invalid_rows(state)
    ]
    confidences = [(r.item.media_id, r.confidence) for r in completed if r.confidence is not None]
    mean = sum(c for _, c in confidences) / len(confidences) if confidences else None
    lowest = sorted(confidences, key=lambda mc: mc[1])[:10]
    return RunSummary(
        total=len(state.manifest.items) + len(state.invalid),
        completed=len(completed),
        failed=len(failures),
        audio_hours=sum(r.audio_duration_s or 0.0 for r in completed) / 3600.0,
        mean_confidence=mean,
        failures=tuple(failures),
        lowest_confidence=tuple((m, c) for m, c in lowest if c is not None),
        output=state.output,
        files=files,
        rows=rows,
        elapsed_s=elapsed_s,
        gone=sum(r.gone for r in recs),
        fatal=str(state.fatal) if state.fatal else None,
        requests=state.client.requests_sent,
        no_words=sum(r.no_words for r in completed),
        detached=sum(1 for r in recs if r.transcript_id and not r.done) if detached else 0,
        captions=state.captions_written,
        # Gone jobs are said apart, once, with the same command (the CLI's "could not be
        # resumed" line).
        retry_failed_ids=(
            *state.skipped_failed,
            *(r.item.media_id for r in recs if r.job_failed and not r.gone),
        ),
        deleted=state.deleted,
        delete_failures=tuple(state.delete_failures),
        held=held,
        **state.counts,
    )
