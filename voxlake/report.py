"""The run summary as Markdown (Prefect artifact), table rows (artifact) and terminal output."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from voxlake.estimate import Estimate
from voxlake.pipeline import RunSummary


def _confidence(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def summary_markdown(summary: RunSummary) -> str:
    lines = [
        "# voxlake run summary",
        "",
        "| measure | value |",
        "|---|---|",
        f"| items | {summary.total} |",
        f"| new | {summary.new} |",
        f"| retried | {summary.retried} |",
        f"| resumed | {summary.resumed} |",
        f"| skipped as already done | {summary.skipped} |",
        f"| skipped as failed before | {summary.skipped_failed} |",
        f"| deferred by the budget | {summary.deferred} |",
        f"| completed | {summary.completed} |",
        f"| failed | {summary.failed} |",
        f"| audio hours | {summary.audio_hours:.3f} |",
        f"| mean confidence | {_confidence(summary.mean_confidence)} |",
        f"| elapsed | {summary.elapsed_s:.1f} s |",
        f"| tables written to | `{summary.output}` |",
        f"| report | `{summary.report or 'not written'}` |",
        "",
    ]
    if summary.fatal:
        lines += [f"**The run stopped early:** {summary.fatal}", ""]
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


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    console.print(
        f"[bold]{summary.completed}/{summary.total} completed[/], {summary.failed} failed, "
        f"{summary.audio_hours * 60:.1f} audio minutes, mean confidence "
        f"{_confidence(summary.mean_confidence)}, {summary.elapsed_s:.1f} s"
    )
    console.print(
        f"{summary.new} new, {summary.retried} retried, {summary.resumed} resumed, "
        f"{summary.skipped} skipped as already done, {summary.skipped_failed} skipped as "
        f"failed before, {summary.deferred} deferred by the budget",
        highlight=False,
    )
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
    console.print(f"Tables written under [bold]{summary.output}[/] ({summary.files})")
    if summary.report:
        console.print(f"Report: {summary.report}", highlight=False)
