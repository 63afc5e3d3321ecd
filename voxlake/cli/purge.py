"""``voxlake purge``: delete at AssemblyAI the transcripts an output root's ledger holds."""

from __future__ import annotations

from typing import Annotated

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


@app.command("purge")
@_stops_on_interrupt("Interrupted: the transcripts deleted so far are recorded; run it again.")
def purge(
    output: Annotated[str, typer.Argument(help="Root of the Parquet tables (local or s3://).")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Delete them (without it: only list what would go).")
    ] = False,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
) -> None:
    """Delete at AssemblyAI every transcript OUTPUT's ledger knows is still held there (its
    rows stay in the tables). Lists them first: nothing is deleted without --yes. Uses
    ASSEMBLYAI_API_KEY (and ASSEMBLYAI_BASE_URL / ASSEMBLYAI_REGION), like voxlake run."""
    from voxlake.lake.views import check_output_root
    from voxlake.purge import purge as purge_output

    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)
    with _exits_on_error():
        check_output_root(output, s3=s3)  # a misspelled folder is an error, not "0 held"
        result = purge_output(output, yes=yes, s3=s3)
    held = result.held

    def transcripts(n: int) -> str:
        return f"{n} transcript" + ("" if n == 1 else "s")

    flying = (
        f" ({held.in_flight} jobs still in flight are left alone: a run collects them first)"
        if held.in_flight
        else ""
    )
    if not held.transcripts:
        typer.echo(
            f"Nothing to purge: 0 transcripts held at AssemblyAI ({held.deleted} deleted "
            f"already){flying}."
        )
        return
    if not yes:
        typer.echo(f"Would delete {transcripts(len(held.transcripts))} held at AssemblyAI{flying}:")
        for h in held.transcripts:
            typer.echo(f"  {h.item.media_id}\t{h.transcript_id}")
        typer.echo("Nothing was deleted: run again with --yes to delete them.")
        return
    typer.echo(f"Deleted {transcripts(result.deleted)} at AssemblyAI{flying}.")
    for f in result.failures:
        typer.echo(f"not deleted: {f.media_id} {f.transcript_id}: {f.error}", err=True)
    if result.failures:
        typer.echo(
            f"{transcripts(len(result.failures))} could not be deleted and are still held: "
            "run voxlake purge again.",
            err=True,
        )
        raise typer.Exit(1)
