"""``voxlake serve-local``: the AssemblyAI-compatible local server (voxlake.emulator)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from voxlake.cli.common import _exits_on_error, _stops_on_interrupt, app


@app.command("serve-local")
@_stops_on_interrupt("Interrupted: the local server stopped.")
def serve_local(
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind; loopback by default.")] = (
        "127.0.0.1"
    ),
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accepted key (repeatable; each key is its own project). Also read from "
            "VOXLAKE_LOCAL_API_KEYS (comma-separated). None: the demo key is accepted.",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Account-wide concurrent jobs.")] = 5,
    processing_fixed: Annotated[float, typer.Option(help="Fixed seconds per job.")] = 0.5,
    processing_per_audio: Annotated[
        float, typer.Option(help="Extra seconds per second of audio.")
    ] = 0.0,
    rate_limit: Annotated[int, typer.Option(help="Requests per window, account-wide.")] = 20_000,
    rate_window: Annotated[float, typer.Option(help="Rate-limit window in seconds.")] = 300.0,
    upload_dir: Annotated[
        Path | None, typer.Option(help="Where uploads are stored (default: a temp dir).")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            help="Keep uploads and jobs here, across restarts: a restarted server finishes the "
            "jobs it had accepted (default: in memory only)."
        ),
    ] = None,
    upload_ttl: Annotated[float, typer.Option(help="Seconds an upload URL stays valid.")] = (
        86_400.0
    ),
    max_upload_bytes: Annotated[int, typer.Option(help="Upload size limit.")] = 2_200_000_000,
    engine: Annotated[
        str,
        typer.Option(help="Transcription engine: auto (sphinx if installed), sphinx, scripted."),
    ] = "auto",
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="ROUTE:KNOB=VALUE[,KNOB=VALUE] (repeatable), e.g. 'transcript_get:p503=0.2'. "
            "Knobs: p429 p500 p503 p504 reset latency retry_after. ROUTE '*' = all.",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Fault RNG seed (or VOXLAKE_FAULT_SEED).")] = (
        None
    ),
    public_base_url: Annotated[
        str | None, typer.Option(help="Base URL put in upload and page URLs.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "INFO",
) -> None:
    """Run the AssemblyAI-compatible local server until interrupted."""
    from voxlake.emulator import (
        DEFAULT_API_KEY,
        EmulatorConfig,
        FaultConfig,
        LocalServer,
        StateDirInUseError,
    )
    from voxlake.emulator.config import fault_seed_from_env, faults_from_env, parse_fault_flag
    from voxlake.errors import ConfigurationError
    from voxlake.settings import settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    keys = list(api_key or [])
    keys += settings().local_api_keys
    try:
        env_seed = fault_seed_from_env()
        faults = FaultConfig(seed=seed if seed is not None else env_seed or 0)
        faults = faults.merged(faults_from_env())
        for flag in fault or []:
            faults = faults.merged(parse_fault_flag(flag))
        config = EmulatorConfig(
            api_keys=keys,
            concurrency_limit=concurrency,
            processing_fixed_s=processing_fixed,
            processing_per_audio_s=processing_per_audio,
            rate_limit=rate_limit,
            rate_window_s=rate_window,
            upload_dir=upload_dir,
            state_dir=state_dir,
            upload_ttl_s=upload_ttl,
            max_upload_bytes=max_upload_bytes,
            engine=engine,
            faults=faults,
            public_base_url=public_base_url,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    log = logging.getLogger("voxlake.cli")
    if not keys:
        # The demo key is public by design (documented), so printing it leaks nothing.
        log.warning("no --api-key given: accepting the demo key %r", DEFAULT_API_KEY)
    server = LocalServer(config, host=host, port=port)
    with _exits_on_error():
        try:
            server.start()
        except StateDirInUseError as exc:  # the server's own error: the CLI translates it
            raise ConfigurationError(str(exc)) from None
    typer.echo(f"voxlake local server on {server.base_url}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
        kept = f"its jobs are kept in {state_dir}" if state_dir else "its jobs were in memory"
        typer.echo(f"Interrupted: the local server stopped; {kept}.", err=True)
        raise typer.Exit(130) from None
    finally:
        server.stop()
