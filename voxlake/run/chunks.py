"""Sizing a run's Prefect task runs: its items in chunks, one task run per chunk and stage.

A Prefect server records only tens of task runs per second, so a run of thousands of files must
cost hundreds of task runs, not thousands; a small manifest gets one task run per item and
stage, which the UI then shows item by item.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


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
