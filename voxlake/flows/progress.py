"""A flow run's progress as a Prefect progress artifact, for deployments' runs in the UI.

:class:`ProgressArtifact` hears the run's :class:`~voxlake.run.progress.Progress` events and
keeps the artifact ``voxlake-run-progress`` of the flow run at the share of item-stages passed
(each item passes four: upload, submit, poll, collect), its description saying each stage's
count. It costs few API calls: the artifact is written when something changed, at most once
every :data:`EVERY_S` seconds, and once more at the end of the run (100 once every item has
passed every stage, failed ones included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from uuid import UUID

from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from voxlake.run.progress import STAGES, Progress, ProgressCallback, ProgressStage

logger = logging.getLogger(__name__)

KEY = "voxlake-run-progress"
#: The artifact is written at most this often while the run changes it.
EVERY_S = 5.0


class ProgressArtifact:
    """A run's ``on_progress``: keeps the flow run's progress artifact up to date while
    :meth:`shown`, and passes each event on to ``also`` (the flow's caller's callback)."""

    def __init__(self, also: ProgressCallback | None = None, *, every_s: float = EVERY_S) -> None:
        self._also = also
        self._every_s = every_s
        self._done: dict[ProgressStage, int] = dict.fromkeys(STAGES, 0)
        self._total = 0
        self._version = 0  # events heard
        self._shown = 0  # events the artifact shows
        self._artifact_id: UUID | None = None

    def __call__(self, event: Progress) -> None:
        self._done[event.stage] = event.done
        self._total = event.total
        self._version += 1
        if self._also is not None:
            self._also(event)

    @property
    def percent(self) -> float:
        if not self._total:
            return 100.0
        passed = sum(min(done, self._total) for done in self._done.values())
        return 100.0 * passed / (len(STAGES) * self._total)

    @contextlib.asynccontextmanager
    async def shown(self) -> AsyncIterator[None]:
        """Keep the artifact up to date for the block; the last events are written as the block
        ends (not when it raises: a cancelled run writes nothing more)."""
        closing = asyncio.Event()
        keeping = asyncio.create_task(self._keep_up(closing))
        try:
            yield
        except BaseException:
            keeping.cancel()
            raise
        closing.set()
        await keeping

    async def _keep_up(self, closing: asyncio.Event) -> None:
        while True:
            # Read before writing: events heard while the artifact is written are written
            # on the next turn, which comes at once when the block has ended meanwhile.
            closed = closing.is_set()
            if self._version != self._shown:
                await self._write()
            if closed:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), self._every_s)

    async def _write(self) -> None:
        self._shown = self._version
        percent = self.percent
        description = ", ".join(f"{s} {self._done[s]}/{self._total}" for s in STAGES)
        try:
            if self._artifact_id is None:
                self._artifact_id = await acreate_progress_artifact(
                    percent, key=KEY, description=description
                )
            else:
                await aupdate_progress_artifact(self._artifact_id, percent, description)
        except Exception as exc:  # the UI's progress must never fail the run it shows
            logger.warning("the run's progress artifact could not be written: %s", exc)
