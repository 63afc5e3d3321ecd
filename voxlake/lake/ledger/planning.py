"""Planning: what a run does with each manifest item, decided from the ledger before it pays.

The table of decisions is in docs/ledger.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from voxlake.lake.ledger.events import DELETION, Status, item_key
from voxlake.lake.ledger.states import STATUS_BY_CODE, ItemState, States
from voxlake.manifest import MediaItem

Action = Literal["new", "resume", "skip_done", "skip_failed"]


@dataclass(frozen=True, slots=True)
class Planned:
    """What this run does with one manifest item, decided from the ledger before any request."""

    item: MediaItem
    key: str
    action: Action
    state: ItemState | None  # the ledger's state of a job to **resume**; None otherwise
    retry: bool = False  # new, but an earlier run's attempt failed


def plan(
    items: Iterable[MediaItem],
    states: States,
    *,
    force: bool = False,
    retry_failed: bool = False,
) -> list[Planned]:
    """Decide each item's fate (docs/ledger.md has the table).

    - in flight in an earlier run (``submitting``/``submitted``): **resume** it; even with
      ``force`` — that job is paid for and this run wants its result;
    - ``force``: **new**, whatever happened before;
    - ever completed: **skip_done**;
    - its job ended in error: **skip_failed**, or **new** with ``retry_failed``;
    - failed before any job existed, or deferred by a budget: **new** (costs nothing extra);
    - its transcript deleted (or being deleted) at AssemblyAI: as the outcome before that.
    """
    items = list(items)
    # Items of one manifest share a handful of options objects (voxlake.manifest caches them),
    # and hashing options is most of a key's cost: hash each object once.
    hashes: dict[int, str] = {}
    keys = []
    for item in items:
        options_hash = hashes.get(id(item.options))
        if options_hash is None:
            options_hash = hashes[id(item.options)] = item.options_hash
        keys.append(item_key(item.source, item.fingerprint, options_hash))
    # One vectorised lookup for the whole manifest: an ItemState is made only for a resume.
    codes, ever_completed = states.codes(keys)
    planned = []
    for item, key, code, done in zip(
        items, keys, codes.tolist(), ever_completed.tolist(), strict=True
    ):
        status = None if code < 0 else STATUS_BY_CODE[code]
        if status in DELETION:
            # Its transcript is (being) deleted at AssemblyAI: planned as the outcome that
            # came before, the only ones a deletion follows.
            status = Status.completed if done else Status.job_failed
        action: Action = "new"
        if status is None:
            pass
        elif status in (Status.submitting, Status.submitted):
            action = "resume"
        elif force:
            pass
        elif done:
            action = "skip_done"
        elif status is Status.job_failed and not retry_failed:
            action = "skip_failed"
        retry = action == "new" and status is not None and status is not Status.deferred
        state = states.get(key) if action == "resume" else None
        planned.append(Planned(item, key, action, state, retry))
    return planned
