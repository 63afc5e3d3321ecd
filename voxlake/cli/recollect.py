"""``voxlake recollect``: rows of new or changed tables, without paying again."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from voxlake.cli.common import (
    S3EndpointUrl,
    S3Profile,
    S3Region,
    _exits_on_error,
    _read_s3_options,
    _stops_on_interrupt,
    app,
)


@app.command("recollect")
@_stops_on_interrupt(
    "Interrupted: the rows written so far are kept; run the same command again to finish."
)
def recollect(
    output: Annotated[str, typer.Argument(help="Root of the Parquet tables (local or s3://).")],
    dry_run: Annotated[
        bool, typer.Option(help="Say how many transcripts would be fetched; fetch nothing.")
    ] = False,
    sentences: Annotated[
        bool,
        typer.Option(
            help="Fill the sentences table for every completed item that lacks it "
            "(one more GET per such item)."
        ),
    ] = False,
    paragraphs: Annotated[
        bool,
        typer.Option(
            help="Fill the paragraphs table for every completed item that lacks it "
            "(one more GET per such item)."
        ),
    ] = False,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
) -> None:
    """Fetch completed transcripts again by id (GET only: nothing is submitted or paid again)
    and write the rows of the tables they lack: tables added to voxlake after they were
    collected, tables whose version changed, and the optional sentences and paragraphs tables
    when asked for (docs/ledger.md, "Re-collecting"). An item written again keeps the optional
    tables it had (fetched again).

    Uses AssemblyAI when ASSEMBLYAI_API_KEY is set (ASSEMBLYAI_BASE_URL for another endpoint),
    otherwise the embedded local server that runs into OUTPUT used.
    """
    import asyncio

    from voxlake.client import AssemblyAIClient
    from voxlake.run.recollect import recollect as recollect_root
    from voxlake.settings import settings

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("voxlake").setLevel(logging.INFO)
    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)
    tables = [name for name, on in (("sentences", sentences), ("paragraphs", paragraphs)) if on]
    with _exits_on_error():
        from voxlake.lake.views import check_output_root

        check_output_root(output, s3=s3)  # a misspelled root: one line, before any server starts
        if dry_run:
            summary = asyncio.run(
                recollect_root(output, client=None, s3=s3, dry_run=True, tables=tables)
            )
        else:
            from voxlake.runner import api_backend

            with api_backend(output, engine=settings().engine) as endpoint:

                async def fetch_all() -> Any:
                    client = endpoint.client() if endpoint else AssemblyAIClient()
                    async with client:
                        return await recollect_root(output, client=client, s3=s3, tables=tables)

                summary = asyncio.run(fetch_all())
    for line in summary_lines(summary):
        typer.echo(line)
    if summary.failed:
        raise typer.Exit(1)


def summary_lines(summary: Any) -> list[str]:
    """What ``voxlake recollect`` prints: a ``voxlake.run.recollect.RecollectSummary``."""
    stale = ", ".join(f"{name} ({n})" for name, n in sorted(summary.stale_by_table.items()))
    lines = []
    if summary.dry_run:
        lines.append(
            f"{summary.due} transcripts would be fetched again (GET only, nothing submitted)"
            + (f"; stale tables: {stale}" if stale else "")
        )
    elif not summary.due:
        lines.append(
            "Nothing to recollect: every completed item's rows are at the current table "
            "versions, with the tables asked for; 0 AssemblyAI requests"
        )
    else:
        lines.append(
            f"Recollected {summary.written} of {summary.due} transcripts: "
            f"{summary.requests} AssemblyAI requests (GET only, 0 submissions)"
            + (f"; stale tables: {stale}" if stale else "")
        )
    if summary.gone:
        lines.append(
            f"{len(summary.gone)} transcripts can no longer be fetched (deleted at AssemblyAI); "
            f"recorded as deleted, not fetched again: {', '.join(summary.gone)}"
        )
    if summary.deleted_before:
        lines.append(f"{summary.deleted_before} items were recorded as deleted before: skipped")
    for media_id, why in summary.failed:
        lines.append(f"not recollected: {media_id}: {why}")
    if summary.failed:
        lines.append(f"{len(summary.failed)} items not recollected: run the same command again")
    return lines
