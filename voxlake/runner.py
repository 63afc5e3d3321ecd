"""What `voxlake run` does around the flow: pick the API backend, show progress, print results.

With neither ``ASSEMBLYAI_API_KEY`` nor ``ASSEMBLYAI_BASE_URL`` set, the embedded local server is
started in-process on a free 127.0.0.1 port and the flow talks to it over HTTP, through exactly
the same client code path it uses against the real API.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from voxlake import pipeline
from voxlake.prefect_api import TemporaryPrefectAPI

logger = logging.getLogger("voxlake")

# The embedded server models a free-tier account with quick jobs, so the demo shows queueing
# (``throttled``) without making anyone wait.
EMBEDDED_CONCURRENCY = 5
EMBEDDED_PROCESSING_FIXED_S = 0.3
EMBEDDED_PROCESSING_PER_AUDIO_S = 0.02


def _api_configured() -> bool:
    return any(os.environ.get(v) for v in ("ASSEMBLYAI_API_KEY", "ASSEMBLYAI_BASE_URL"))


@contextmanager
def api_backend() -> Iterator[str]:
    """Yield a description of the API in use, starting the embedded server when none is set."""
    if _api_configured():
        yield os.environ.get("ASSEMBLYAI_BASE_URL") or "AssemblyAI (configured region)"
        return
    from voxlake.emulator import DEFAULT_API_KEY, EmulatorConfig, LocalServer

    config = EmulatorConfig(
        concurrency_limit=EMBEDDED_CONCURRENCY,
        processing_fixed_s=EMBEDDED_PROCESSING_FIXED_S,
        processing_per_audio_s=EMBEDDED_PROCESSING_PER_AUDIO_S,
    )
    # The embedded server's own start-up chatter (demo key, address) is said once, below.
    logging.getLogger("voxlake.emulator").setLevel(logging.ERROR)
    with LocalServer(config, port=0) as server:
        logger.info(
            "No ASSEMBLYAI_API_KEY set: using the embedded local AssemblyAI-compatible server "
            "at %s",
            server.base_url,
        )
        os.environ["ASSEMBLYAI_BASE_URL"] = server.base_url
        os.environ["ASSEMBLYAI_API_KEY"] = DEFAULT_API_KEY
        try:
            yield server.base_url
        finally:
            os.environ.pop("ASSEMBLYAI_BASE_URL", None)
            os.environ.pop("ASSEMBLYAI_API_KEY", None)


@contextmanager
def progress_bar(total: int, enabled: bool = True) -> Iterator[None]:
    """A rich progress bar per stage, fed by the pipeline's progress listeners."""
    if not enabled:
        yield
        return
    columns = (
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        bars = {
            stage: progress.add_task(stage, total=total)
            for stage in ("upload", "submit", "poll", "collect")
        }

        def advance(stage: str, n: int) -> None:
            if stage in bars:
                progress.advance(bars[stage], n)

        pipeline.progress_listeners.append(advance)
        try:
            yield
        finally:
            pipeline.progress_listeners.remove(advance)


def run_manifest(
    manifest: str,
    output: str,
    *,
    prefect_api: TemporaryPrefectAPI,
    options: dict[str, object] | None,
    chunk_size: int | None,
    on_invalid: str,
    fail_on_error: bool,
    max_uploads: int,
    progress: bool,
    s3: dict[str, object] | None = None,
    media_extensions: list[str] | None = None,
    content_hash: bool = False,
) -> pipeline.RunSummary:
    """Run the flow once, as ``voxlake run`` does, and return its summary.

    ``prefect_api`` was entered before this module was imported (see ``voxlake.prefect_api``).
    """
    import asyncio

    from flows.transcribe import transcribe_manifest
    from voxlake.manifest import read_manifest
    from voxlake.storage import S3Options

    s3_options = S3Options.model_validate(s3) if s3 else None
    # Read once up front for the progress bar's total; the flow validates it again itself.
    total = len(
        read_manifest(
            manifest,
            defaults=options,
            on_invalid=on_invalid,  # type: ignore[arg-type]
            media_extensions=media_extensions,
            s3=s3_options,
        )
    )
    with prefect_api.connected(), api_backend(), progress_bar(total, enabled=progress):
        state = asyncio.run(
            transcribe_manifest(
                manifest=manifest,
                output=output,
                options=options,
                chunk_size=chunk_size,
                on_invalid=on_invalid,  # type: ignore[arg-type]
                fail_on_error=fail_on_error,
                max_uploads=max_uploads,
                s3=s3_options,
                media_extensions=media_extensions,
                content_hash=content_hash,
                return_state=True,
            )
        )
        summary = state.result(raise_on_failure=False)
        if isinstance(summary, pipeline.RunSummary):
            prefect_api.wait_until_recorded(state.state_details.flow_run_id, summary.task_runs)
    if not isinstance(summary, pipeline.RunSummary):
        raise RuntimeError(f"flow run ended in {state.type.value}: {state.message}") from (
            summary if isinstance(summary, BaseException) else None
        )
    return summary
