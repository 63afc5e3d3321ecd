"""The run summary as Markdown (Prefect artifact), table rows (artifact) and terminal output."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

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
        f"| completed | {summary.completed} |",
        f"| failed | {summary.failed} |",
        f"| audio hours | {summary.audio_hours:.3f} |",
        f"| mean confidence | {_confidence(summary.mean_confidence)} |",
        f"| elapsed | {summary.elapsed_s:.1f} s |",
        f"| tables written to | `{summary.output}` |",
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


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    console.print(
        f"[bold]{summary.completed}/{summary.total} completed[/], {summary.failed} failed, "
        f"{summary.audio_hours * 60:.1f} audio minutes, mean confidence "
        f"{_confidence(summary.mean_confidence)}, {summary.elapsed_s:.1f} s"
    )
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
