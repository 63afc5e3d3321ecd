"""``voxlake webhooks``: the webhook receiver (voxlake.webhooks) as its own process."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from voxlake.cli.common import (
    S3EndpointUrl,
    S3Profile,
    S3Region,
    _exits_on_error,
    _fail,
    _read_s3_options,
    _stops_on_interrupt,
    app,
)
from voxlake.request import DEFAULT_RECEIVER_PORT, DEFAULT_WEBHOOK_HEADER


@app.command("webhooks")
@_stops_on_interrupt("Interrupted: the webhook receiver stopped.")
def webhooks(
    output: Annotated[
        str, typer.Argument(help="Root of the run's output (local or s3://): where it records.")
    ],
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option(help="Port to listen on (0: any free port).")
    ] = DEFAULT_RECEIVER_PORT,
    auth_header_name: Annotated[
        str, typer.Option(help="The webhook_auth_header_name the jobs are submitted with.")
    ] = DEFAULT_WEBHOOK_HEADER,
    auth_header_value_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the webhook_auth_header_value (never a plain "
            "argument: it would show in ps). None: asked for on the terminal."
        ),
    ] = None,
    collect: Annotated[
        bool,
        typer.Option(
            help="Collect the jobs of detached runs (voxlake run --detach) as their "
            "notifications land: one GET each, rows committed as a run does, nothing "
            "submitted. Uses ASSEMBLYAI_API_KEY (and ASSEMBLYAI_BASE_URL / ASSEMBLYAI_REGION)."
        ),
    ] = False,
    s3_endpoint_url: S3EndpointUrl = None,
    s3_region: S3Region = None,
    s3_profile: S3Profile = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Receive AssemblyAI's webhook notifications (POST /voxlake/webhook) until interrupted,
    recording each under OUTPUT/_webhooks/notifications/ (docs/webhooks.md)."""
    import uvicorn

    from voxlake import webhooks as receiver

    s3 = _read_s3_options(s3_endpoint_url, s3_region, s3_profile)
    with _exits_on_error():
        if auth_header_value_env is not None:
            auth = receiver.auth_from_env(auth_header_name, auth_header_value_env)
        elif sys.stdin.isatty():
            value = typer.prompt(f"{auth_header_name} value", hide_input=True, err=True)
            auth = receiver.checked_auth(auth_header_name, value, where="the value typed")
        else:
            raise typer.BadParameter("give --auth-header-value-env VAR (no terminal to ask on)")
        store = receiver.NotificationStore(output, s3=s3)
        if collect:
            from voxlake.run.collector import Collector

            collector = Collector.from_env(output, s3=s3)
        else:
            collector = None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        sock, url = receiver.listen(host, port)
    except OSError as exc:
        raise _fail(exc) from None
    typer.echo(f"voxlake webhook receiver on {url}", err=True)
    config = uvicorn.Config(
        receiver.create_app(store, auth, collector), log_config=None, timeout_graceful_shutdown=5
    )
    # uvicorn handles Ctrl-C itself (finishing the requests being recorded), then raises
    # SIGINT again: the KeyboardInterrupt that ends the command with status 130.
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
