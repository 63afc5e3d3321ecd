"""Failure classification: what a stage's error means for its item, the ledger and the run.

Every failure is recorded on its item, never raised, so one bad item cannot fail its
neighbours (:func:`fail`). Per-request retries already happened inside the client's
RetryPolicy: an error that reaches here has had its retries. What the error decides:

- the ledger event (:func:`failure_event`): ``failed`` (no job exists: retried free next run),
  ``job_failed`` (paid for: resubmitted only with ``--retry-failed``), or none (the job's
  outcome is still to be learned: the next run resumes it instead of paying again);
- whether the run must stop sending (:func:`stops_the_run`: a refused key, a lost lease);
- whether a failed create may have made a job (:func:`outcome_unknown`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

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
from voxlake.lake.ledger import Event, LeaseLostError, Status
from voxlake.redact import redact_text
from voxlake.run import load
from voxlake.run.progress import ProgressStage
from voxlake.run.state import ItemRecord, RunState, Stage

logger = logging.getLogger(__name__)


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


class RunStoppedError(VoxlakeError):
    """An item the run did not finish (it stopped early, or a stage gave up on it)."""


_STAYS_IN_FLIGHT = (SubmitOutcomeUnknownError, PollTimeoutError, LeaseLostError, RunStoppedError)

# The progress stage a failure stage belongs to (the item counts through the ones after it).
_PROGRESS_STAGE: dict[Stage, ProgressStage] = {
    "manifest": "upload",
    "upload": "upload",
    "submit": "submit",
    "poll": "poll",
    "fetch": "collect",
    "write": "collect",
}


def fail(state: RunState, media_id: str, stage: Stage, exc: BaseException) -> None:
    """Record that ``media_id`` failed at ``stage``: on its record, as an error row, in the
    ledger when its event says so, and as the run's fatal error when it stops the run."""
    rec = state.records[media_id]
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
    if stops_the_run(exc) and state.fatal is None:
        state.fatal = exc if isinstance(exc, VoxlakeError) else VoxlakeError(str(exc))
    if stage == "upload":
        state.client.reserve_requests(-1)  # its submit will never be sent
    # The item leaves the run here: count it through the stages it will never reach.
    state.progress.skip_after(_PROGRESS_STAGE[stage])
    event = failure_event(rec, stage, exc)
    rec.job_failed = event is not None and event.status is Status.job_failed
    load.add_error_row(state, rec, event)


def fail_pending(
    state: RunState, media_ids: Iterable[str], stage: Stage, exc: BaseException
) -> None:
    """Record every still-pending item of a chunk whose stage failed for good."""
    for media_id in media_ids:
        if state.pending(media_id):
            fail(state, media_id, stage, exc)


def failure_event(rec: ItemRecord, stage: Stage, exc: BaseException) -> Event | None:
    """The ledger event of a failure, or None when the item stays in flight for the next run.

    No job exists after an upload error or a certainly refused submit (``failed``: retried free
    next run). A job whose outcome or result is still to be learned (an unknown submit, a poll
    timeout, a fetch error, a run that stopped) keeps its ``submitting``/``submitted`` state,
    so the next run resumes it instead of paying again. A job that ended in error, or whose
    rows cannot be built, is ``job_failed``: resubmitted only with ``--retry-failed``.
    """
    if isinstance(exc, _STAYS_IN_FLIGHT) or stops_the_run(exc):
        return None
    if stage == "fetch" and not isinstance(exc, JobGoneError):  # fetched again next run
        return None
    if rec.transcript_id is None:
        refused = stage == "submit" and isinstance(exc, VoxlakeError) and not outcome_unknown(exc)
        if rec.submitting_at is not None and not refused:
            return None  # a create may have gone out: the next run looks the job up first
        return Event(rec.item, Status.failed, stage=stage, error=rec.error)
    return Event(
        rec.item, Status.job_failed, transcript_id=rec.transcript_id, stage=stage, error=rec.error
    )


def stops_the_run(exc: BaseException) -> bool:
    """A refused API key or a lost lease: every further request would fail (or pay twice)."""
    if isinstance(exc, LeaseLostError | AuthenticationError):
        return True
    return isinstance(exc, ForbiddenError) and not isinstance(exc, UploadAccessError)


def outcome_unknown(exc: VoxlakeError) -> bool:
    """After a failed create: may the job exist? Only a 429 and a connection that was never
    made are certain refusals; any other transient failure may have created it."""
    if isinstance(exc, RateLimitError):
        return False
    if isinstance(exc, NetworkError) and not exc.request_sent:
        return False
    return isinstance(exc, ServerError | NetworkError)
