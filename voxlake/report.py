"""The run summary as Markdown (Prefect artifact), table rows (artifact) and terminal output.

What a run did is said in the same terms everywhere: of the manifest's items, how many were new,
retried, resumed, skipped as already done, skipped as failed before and deferred by the budget;
how many AssemblyAI requests the run sent; the mean confidence over the items with words (a
clip of silence has none, and its confidence of 0 says nothing); and, when items are skipped
because their job failed, how to submit them again. A run with nothing to do says so.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from voxlake.estimate import Estimate
from voxlake.run.summary import RunSummary


def _confidence(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _worked(summary: RunSummary) -> int:
    """Items this run worked on (submitted, resumed, or recorded as invalid rows)."""
    return summary.total - summary.skipped - summary.skipped_failed - summary.deferred


def _plan_line(summary: RunSummary) -> str:
    invalid = sum(f.stage == "manifest" for f in summary.failures)
    return (
        f"{_count(summary.total, 'item')} in the manifest: {summary.new} new, "
        f"{summary.retried} retried, {summary.resumed} resumed, {summary.skipped} skipped as "
        f"already done, {summary.skipped_failed} skipped as failed before, "
        f"{summary.deferred} deferred by the budget"
        + (f", {_count(invalid, 'invalid row')}" if invalid else "")
    )


def _confidence_label(summary: RunSummary) -> str:
    """``mean confidence`` and over what, e.g. ``(2 items with words; 1 had none)``."""
    with_words = summary.completed - summary.no_words
    note = _count(with_words, "item") + " with words"
    if summary.no_words:
        note += f"; {summary.no_words} had none"
    return f"mean confidence ({note})"


def _failed_jobs(summary: RunSummary) -> str | None:
    """Which items later runs skip because their job failed, or None."""
    ids = summary.retry_failed_ids
    if not ids:
        return None
    names = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
    verb = "is" if len(ids) == 1 else "are"
    return (
        f"{_count(len(ids), 'item')} whose AssemblyAI job failed {verb} skipped by later runs "
        f"({names})"
    )


def _deletion(summary: RunSummary) -> str | None:
    """What the run deleted at AssemblyAI and what is still held there, or None (not asked)."""
    if summary.held is None and not summary.deleted and not summary.delete_failures:
        return None
    text = f"{_count(summary.deleted, 'transcript')} deleted at AssemblyAI"
    if summary.delete_failures:
        text += f", {len(summary.delete_failures)} could not be deleted (retried next run)"
    if summary.held is not None:
        text += f"; {summary.held} still held there"
        if summary.held:
            text += f" (voxlake purge {shlex.quote(summary.output)} deletes them)"
    return text


def voxlake_command(args: Sequence[str]) -> str:
    """``voxlake ARGS`` as a shell command that runs as printed where this one was started.

    Under ``uv run`` the environment's ``bin`` is on PATH only for the command's duration, so a
    bare ``voxlake`` would not be found afterwards; an installed ``voxlake`` on PATH is used as
    is; anything else runs through this interpreter.
    """
    if os.environ.get("UV_RUN_RECURSION_DEPTH"):  # set by `uv run` for what it starts
        uv = "uv" if shutil.which("uv") else os.environ.get("UV", "uv")
        program = [uv, "run", "voxlake"]
    elif (found := shutil.which("voxlake")) and Path(found).parent == Path(sys.executable).parent:
        program = ["voxlake"]
    else:
        program = [sys.executable, "-m", "voxlake.cli"]
    return shlex.join([*program, *args])


def summary_markdown(summary: RunSummary) -> str:
    lines = ["# voxlake run summary", ""]
    if not _worked(summary) and not summary.requests:
        lines += ["Nothing to do: no request was sent and no table file was written.", ""]
    lines += [
        "| measure | value |",
        "|---|---|",
        f"| items | {summary.total} |",
        f"| new | {summary.new} |",
        f"| retried | {summary.retried} |",
        f"| resumed | {summary.resumed} |",
        f"| skipped as already done | {summary.skipped} |",
        f"| skipped as failed before | {summary.skipped_failed} |",
        f"| could not be resumed (job gone; `retry_failed` submits again) | {summary.gone} |",
        f"| deferred by the budget | {summary.deferred} |",
        f"| detached (submitted; a later run collects them) | {summary.detached} |",
        f"| completed | {summary.completed} |",
        f"| failed | {summary.failed} |",
        f"| audio hours | {summary.audio_hours:.3f} |",
        f"| {_confidence_label(summary)} | {_confidence(summary.mean_confidence)} |",
        f"| AssemblyAI requests | {summary.requests} |",
        *(
            [
                f"| transcripts deleted at AssemblyAI | {summary.deleted} |",
                f"| transcripts that could not be deleted | {len(summary.delete_failures)} |",
                f"| transcripts still held at AssemblyAI | "
                f"{'not counted' if summary.held is None else summary.held} |",
            ]
            if _deletion(summary)
            else []
        ),
        f"| caption files written | {summary.captions} |",
        f"| elapsed | {summary.elapsed_s:.1f} s |",
        f"| tables written to | `{summary.output}` |",
        f"| report | `{summary.report or 'not written'}` |",
        "",
    ]
    if summary.bill:
        lines += ["## Estimated cost", "", *(f"- {line.strip()}" for line in summary.bill), ""]
    if summary.fatal:
        lines += [f"**The run stopped early:** {summary.fatal}", ""]
    failed_jobs = _failed_jobs(summary)
    if failed_jobs:
        lines += [
            "## Failed jobs",
            "",
            f"{failed_jobs}. To submit them again, run with `--retry-failed` (`voxlake run`) "
            "or the flow parameter `retry_failed=True`.",
            "",
        ]
    if summary.failures:
        lines += [
            "## Failures",
            "",
            "| media_id | stage | transcript_id | reason |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {f.media_id} | {f.stage} | {f.transcript_id or ''} | {f.error.replace('|', '/')} |"
            for f in summary.failures
        ]
        lines.append("")
    if summary.delete_failures:
        lines += [
            "## Transcripts not deleted",
            "",
            "Still held at AssemblyAI; the next run, or `voxlake purge`, deletes them.",
            "",
            "| media_id | transcript_id | reason |",
            "|---|---|---|",
        ]
        lines += [
            f"| {f.media_id} | {f.transcript_id} | {f.error.replace('|', '/')} |"
            for f in summary.delete_failures
        ]
        lines.append("")
    if summary.lowest_confidence:
        lines += ["## Lowest confidence", "", "| media_id | confidence |", "|---|---|"]
        lines += [f"| {m} | {c:.3f} |" for m, c in summary.lowest_confidence]
    return "\n".join(lines) + "\n"


def summary_table(summary: RunSummary) -> list[dict[str, Any]]:
    """One row per failure and per lowest-confidence item, for a Prefect table artifact."""
    rows: list[dict[str, Any]] = [
        {
            "media_id": f.media_id,
            "kind": "failure",
            "stage": f.stage,
            "transcript_id": f.transcript_id or "",
            "detail": f.error,
        }
        for f in summary.failures
    ]
    rows += [
        {
            "media_id": m,
            "kind": "low confidence",
            "stage": "",
            "transcript_id": "",
            "detail": f"{c:.3f}",
        }
        for m, c in summary.lowest_confidence
    ]
    return rows


def dry_run_markdown(estimate: Estimate) -> str:
    lines = ["# voxlake dry run", "", "Nothing was submitted.", ""]
    lines += [f"- {line.strip()}" for line in estimate.lines()]
    return "\n".join(lines) + "\n"


def print_estimate(estimate: Estimate, console: Console | None = None) -> None:
    console = console or Console()
    console.print("[bold]Dry run[/]: nothing was uploaded or submitted")
    for line in estimate.lines():
        console.print(line, highlight=False)


def print_summary(
    summary: RunSummary, console: Console | None = None, *, retry_command: str | None = None
) -> None:
    """The summary on the terminal. ``retry_command``: the command that submits the failed
    jobs again (the CLI's own command line with ``--retry-failed``)."""
    # Lines are not wrapped at the terminal's width: a command must stay one line to be copied.
    console = console or Console(soft_wrap=True)
    written = sum(summary.files.values())
    requests = _count(summary.requests, "AssemblyAI request")
    if not _worked(summary):
        state = "nothing written" if not written else f"{_count(written, 'file')} written"
        console.print(
            f"[bold]Nothing to do[/]: {requests}, {state}, {summary.elapsed_s:.1f} s",
            highlight=False,
        )
    else:
        confidence = f"mean confidence {_confidence(summary.mean_confidence)}"
        if summary.no_words:
            with_words = summary.completed - summary.no_words
            confidence += (
                f" over {_count(with_words, 'item')} with words ({summary.no_words} had none)"
            )
        console.print(
            f"[bold]{summary.completed}/{_worked(summary)} completed[/], {summary.failed} failed, "
            f"{summary.audio_hours * 60:.1f} audio minutes, {confidence}, {requests}, "
            f"{summary.elapsed_s:.1f} s",
            highlight=False,
        )
    console.print(_plan_line(summary), highlight=False)
    if summary.detached:
        console.print(
            f"[bold]{summary.detached} submitted, to be collected later[/] (--detach): run the "
            "same command again without --detach to collect them; nothing is paid twice",
            highlight=False,
        )
    for line in summary.bill:
        console.print(line, highlight=False, markup=False)
    if summary.fatal:
        console.print(f"[bold red]run stopped early:[/] {summary.fatal}")
    if summary.failures:
        table = Table("media_id", "stage", "reason", title="Failures", title_justify="left")
        for f in summary.failures:
            table.add_row(f.media_id, f.stage, f.error)
        console.print(table)
    if summary.lowest_confidence:
        table = Table("media_id", "confidence", title="Lowest confidence", title_justify="left")
        for m, c in summary.lowest_confidence:
            table.add_row(m, f"{c:.3f}")
        console.print(table)
    failed_jobs = _failed_jobs(summary)
    if failed_jobs:
        them = "it" if len(summary.retry_failed_ids) == 1 else "them"
        if retry_command:
            console.print(f"{failed_jobs}; to submit {them} again:", highlight=False)
            console.print(f"  {retry_command}", highlight=False, markup=False)
        else:
            console.print(f"{failed_jobs}; --retry-failed submits {them} again", highlight=False)
    if summary.gone:  # said apart from the failed jobs, once, with the command that retries them
        console.print(
            f"{summary.gone} items could not be resumed: their jobs no longer exist on the "
            f"server, so they count as failed from now on. To submit them again (paid again): "
            f"{retry_command or '--retry-failed'}",
            highlight=False,
            markup=False,
        )
    deletion = _deletion(summary)
    if deletion:
        console.print(deletion, highlight=False, markup=False)
    if summary.delete_failures:
        table = Table(
            "media_id", "transcript_id", "reason", title="Not deleted", title_justify="left"
        )
        for d in summary.delete_failures:
            table.add_row(d.media_id, d.transcript_id, d.error)
        console.print(table)
    if written:
        # The tables given no rows get just their schema (every table exists once a run wrote
        # rows): said as one count, not named one by one.
        full = [(t, n) for t, n in summary.files.items() if n and summary.rows.get(t)]
        files = ", ".join(f"{n} {table} file{'' if n == 1 else 's'}" for table, n in full)
        empty = sum(1 for n in summary.files.values() if n) - len(full)
        if empty:
            files += f" (+{empty} empty)" if full else _count(empty, "empty table")
        console.print(f"Tables written under [bold]{summary.output}[/]: {files}", highlight=False)
    if summary.captions:
        captions = _count(summary.captions, "caption file")
        where = f"{summary.output}/captions"
        console.print(f"Captions written under {where}: {captions}", highlight=False)
    if summary.report:
        console.print(f"Report: {summary.report}", highlight=False)
