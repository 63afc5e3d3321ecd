"""``voxlake report``: the self-contained HTML report of an output root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxlake.cli.common import (
    S3EndpointUrl,
    S3Profile,
    S3Region,
    _exits_on_error,
    _read_s3_options,
    app,
)


@app.command("report")
def report(
    output: Annotated[str, typer.Argument(help="Root of the Parquet tables (local or s3://).")],
    run_id: Annotated[
        str | None,
        typer.Option(
            help="One flow run (flow_run_id). Default: every item's current outcome "
            "(transcripts_current)."
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="First run_date to include (YYYY-MM-DD); a date range.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Last run_date to include (YYYY-MM-DD); a date range.")
    ] = None,
    word_threshold: Annotated[
        float, typer.Option(help="Words below this confidence count as unsure.")
    ] = 0.5,
    references: Annotated[
        Path | None,
        typer.Option(
            help="Manifest (CSV) with media_id and a 'reference' column, or a 'source' column "
            "whose clips have a <clip>.ref.txt beside them: adds word error rates."
        ),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option("--out", help="Where to write the HTML (default OUTPUT/report.html)."),
    ] = None,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
) -> None:
    """Write a self-contained HTML report (inline charts, no network): every item's current
    outcome under OUTPUT, or one run (--run-id), or the runs of a date range."""
    from voxlake.analytics_report import write_report

    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)
    with _exits_on_error():
        path = write_report(
            output,
            s3=s3,
            out=out,
            run_id=run_id,
            since=since,
            until=until,
            word_threshold=word_threshold,
            references=references,
        )
    typer.echo(path)
