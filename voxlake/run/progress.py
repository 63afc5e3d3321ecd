"""Typed progress of a run: how many of its items have passed each stage.

A run tells its ``on_progress`` callback a :class:`Progress` each time items pass a stage, and
one per stage with ``done=0`` once it has planned its items against the ledger, so every event
carries its stage's total. An item that fails counts through the stages it will never reach, so
every stage ends at its total. The CLI draws the events as bars (:mod:`voxlake.runner`); a flow
run shows them as a progress artifact (:mod:`voxlake.flows.progress`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

ProgressStage = Literal["upload", "submit", "poll", "collect"]
#: The stages every item passes, in order.
STAGES: tuple[ProgressStage, ...] = ("upload", "submit", "poll", "collect")


@dataclass(frozen=True, slots=True)
class Progress:
    """``done`` of the run's ``total`` items have passed ``stage``."""

    stage: ProgressStage
    done: int
    total: int


#: Hears a run's :class:`Progress` events, on the run's event loop: it must be quick.
ProgressCallback = Callable[[Progress], None]


class ProgressCounter:
    """Counts a run's items through :data:`STAGES` and tells ``on_progress`` each change."""

    def __init__(self, on_progress: ProgressCallback | None = None) -> None:
        self._on_progress = on_progress
        self.total = 0
        self.done: dict[ProgressStage, int] = dict.fromkeys(STAGES, 0)

    def plan(self, total: int) -> None:
        """The run works on ``total`` items: every stage starts at 0 of them."""
        self.total = total
        for stage in STAGES:
            self._tell(stage)

    def advance(self, stage: ProgressStage, n: int) -> None:
        if n:
            self.done[stage] += n
            self._tell(stage)

    def skip_after(self, stage: ProgressStage) -> None:
        """An item left the run at ``stage``: count it through every later stage."""
        for later in STAGES[STAGES.index(stage) + 1 :]:
            self.advance(later, 1)

    def _tell(self, stage: ProgressStage) -> None:
        if self._on_progress is not None:
            self._on_progress(Progress(stage, self.done[stage], self.total))
