"""``voxlake serve``: Prefect server, work pool, deployments and a worker (voxlake.serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from voxlake.cli.common import _exits_on_error, _stops_on_interrupt, app
from voxlake.request import DEFAULT_RECEIVER_PORT, DEFAULT_WEBHOOK_HEADER


@app.command("serve")
@_stops_on_interrupt("Interrupted: voxlake serve stopped its worker and Prefect server.")
def serve(
    host: Annotated[
        str,
        typer.Option(
            help="Interface for the Prefect server it starts; other than loopback needs "
            "PREFECT_SERVER_API_AUTH_STRING."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the Prefect server it starts.")] = 4200,
    home: Annotated[
        Path, typer.Option(help="Folder of the Prefect server's database (kept across runs).")
    ] = Path(".voxlake/prefect"),
    pool: Annotated[str, typer.Option(help="Process work pool of the deployments.")] = "voxlake",
    worker: Annotated[bool, typer.Option(help="Start a worker on the pool.")] = True,
    local_arg: Annotated[
        list[str] | None,
        typer.Option(
            "--local-arg",
            help="An argument for the embedded 'voxlake serve-local' started when no "
            "ASSEMBLYAI_API_KEY is set (repeatable), e.g. --local-arg=--engine=scripted.",
        ),
    ] = None,
    database: Annotated[
        str,
        typer.Option(
            help="Database of the Prefect server it starts: sqlite (in --home), or postgresql "
            "(PREFECT_API_DATABASE_CONNECTION_URL, else one started with its files in "
            ".voxlake/postgres; for concurrent runs and many workers, docs/operations.md).",
        ),
    ] = "sqlite",
    webhooks: Annotated[
        str | None,
        typer.Option(
            metavar="OUTPUT",
            help="Run the webhook receiver beside (voxlake webhooks OUTPUT): notifications "
            "recorded under OUTPUT, the runs' output root (docs/webhooks.md).",
        ),
    ] = None,
    webhook_host: Annotated[str, typer.Option(help="The receiver's interface.")] = "127.0.0.1",
    webhook_port: Annotated[
        int, typer.Option(help="The receiver's port (0: any free).")
    ] = DEFAULT_RECEIVER_PORT,
    webhook_auth_header_name: Annotated[
        str, typer.Option(help="The webhook_auth_header_name the jobs are submitted with.")
    ] = DEFAULT_WEBHOOK_HEADER,
    webhook_auth_header_value_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the webhook_auth_header_value (required with "
            "--webhooks)."
        ),
    ] = None,
    webhook_collect: Annotated[
        bool,
        typer.Option(
            help="The receiver collects detached runs' jobs as their notifications land, with "
            "the deployments' AssemblyAI endpoint (voxlake webhooks --collect)."
        ),
    ] = False,
) -> None:
    """Prefect server (or the configured PREFECT_API_URL), work pool, shared request limit,
    blocks, deployments/prefect.yaml and a worker: scheduled runs and backfills on one machine.
    With no ASSEMBLYAI_API_KEY, the deployments use an embedded local server started beside.
    With --webhooks, the webhook receiver too.
    """
    from voxlake import serve as serving
    from voxlake.serve_webhooks import ServeWebhooks

    if webhooks is None and (webhook_collect or webhook_auth_header_value_env):
        raise typer.BadParameter(
            "give --webhooks OUTPUT to run the receiver", param_hint="--webhooks"
        )
    hooks = None
    if webhooks is not None:
        hooks = ServeWebhooks(
            webhooks,
            webhook_host,
            webhook_port,
            webhook_auth_header_name,
            webhook_auth_header_value_env,
            webhook_collect,
        )
    with _exits_on_error():
        serving.serve(
            host=host,
            port=port,
            home=home,
            pool=pool,
            worker=worker,
            local_args=local_arg or (),
            database=database,
            webhooks=hooks,
            say=typer.echo,
        )
