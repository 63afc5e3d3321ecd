"""``voxlake query``: SQL over an output root's tables (DuckDB, voxlake.query)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxlake.cli.common import (
    S3EndpointUrl,
    S3Profile,
    S3Region,
    _exits_on_error,
    _fail,
    _read_s3_options,
    app,
)


@app.command("query")
def query(
    output: Annotated[str, typer.Argument(help="Root of the Parquet tables (local or s3://).")],
    sql: Annotated[
        str | None,
        typer.Argument(
            help="SQL to run. None: statements are read from stdin, each ending with ';' "
            "(an interactive shell on a terminal)."
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="table, csv, json (JSON Lines) or parquet (to --out, or bytes to a "
            "redirected stdout).",
        ),
    ] = "table",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the result to this file, not stdout (its folder is created)."
        ),
    ] = None,
    max_rows: Annotated[int, typer.Option(help="Rows shown by --format table.")] = 100,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
) -> None:
    """Run SQL over the tables under OUTPUT with DuckDB, views predefined: transcripts, words,
    utterances and the speech-understanding tables (sentiment, entities, ...: every run), and
    <table>_current for each (one current outcome per media_id). Bad SQL: DuckDB's message on
    stderr, exit code 2."""
    import contextlib
    import io
    import sys

    from voxlake.lake.views import check_output_root, connect
    from voxlake.query import FORMATS, repl, run_statement, write_result

    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None and sys.stdout.isatty():
        typer.echo(
            "error: --format parquet writes bytes: give --out FILE or redirect stdout", err=True
        )
        raise typer.Exit(2)
    try:
        check_output_root(output, s3=s3)  # a misspelled folder is an error, not an empty result
        con = connect(output, s3=s3)
    except Exception as exc:  # also Arrow's and DuckDB's (unreadable files, missing bucket)
        raise _fail(exc) from None
    with con, contextlib.ExitStack() as stack:
        if out is None:
            text, binary = sys.stdout, sys.stdout.buffer
        else:
            # Created like `voxlake report --out`'s: an export folder is asked for, not a typo
            # (the root, which may be mistyped, has been checked above).
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                binary = stack.enter_context(out.open("wb"))
            except OSError as exc:
                typer.echo(f"error: --out {out}: {exc.strerror or exc}", err=True)
                raise typer.Exit(2) from None
            text = stack.enter_context(io.TextIOWrapper(binary, encoding="utf-8", newline=""))
        if sql is None:
            failures = repl(
                con,
                sys.stdin,
                fmt=fmt,
                out=text,
                err=sys.stderr,
                prompt=sys.stdin.isatty(),
                binary=binary,
                max_rows=max_rows,
            )
            if failures:
                raise typer.Exit(2)
            return
        with _exits_on_error():
            rel = run_statement(con, sql)
            if rel is not None:
                write_result(rel, fmt, text=text, binary=binary, max_rows=max_rows)
