"""What `voxlake run` does around the flow: pick the API backend, show progress, print results.

With neither ``ASSEMBLYAI_API_KEY`` nor ``ASSEMBLYAI_BASE_URL`` set, the embedded local server is
started in-process on a free 127.0.0.1 port and the flow talks to it over HTTP, through exactly
the same client code path it uses against the real API. Its address and key reach the flow as
its ``credentials`` argument; nothing is written to ``os.environ``, which would leak into every
later run and child process of this one.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from voxlake.errors import VoxlakeError
from voxlake.estimate import Estimate
from voxlake.inputs import RunInputs, manifest_read_before
from voxlake.pipeline import ProgressCallback, RunSummary
from voxlake.prefect_api import TemporaryPrefectAPI

if TYPE_CHECKING:
    # Prefect is imported when a run starts (see run_manifest), after the temporary API.
    from prefect import State

    from voxlake.credentials import AssemblyAICredentials

logger = logging.getLogger("voxlake")

# The embedded server models a free-tier account with quick jobs, so the demo shows queueing
# (``throttled``) without making anyone wait.
EMBEDDED_CONCURRENCY = 5
EMBEDDED_PROCESSING_FIXED_S = 0.3
EMBEDDED_PROCESSING_PER_AUDIO_S = 0.02


def _api_configured() -> bool:
    return any(os.environ.get(v) for v in ("ASSEMBLYAI_API_KEY", "ASSEMBLYAI_BASE_URL"))


@contextmanager
def api_backend() -> Iterator[AssemblyAICredentials | None]:
    """The credentials for the flow: None when the environment configures the API (the flow
    reads it), else those of the embedded server, started here for the block's duration."""
    if _api_configured():
        yield None
        return
    from voxlake.credentials import AssemblyAICredentials
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
        yield AssemblyAICredentials(api_key=DEFAULT_API_KEY, base_url=server.base_url)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """A rich progress bar per stage; yields the run's ``on_progress`` callback that feeds them.

    The run announces how many items it works on (``total``) once it has planned them against
    the ledger, so the manifest is read once, by the flow.
    """
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        bars = {
            stage: progress.add_task(stage, total=None)
            for stage in ("upload", "submit", "poll", "collect")
        }

        def advance(stage: str, n: int) -> None:
            if stage == "total":
                for bar in bars.values():
                    progress.update(bar, total=n)
            elif stage in bars:
                progress.advance(bars[stage], n)

        yield advance


def run_manifest(
    *,
    prefect_api: TemporaryPrefectAPI,
    progress: bool,
    inputs: RunInputs | None = None,
    **parameters: Any,
) -> RunSummary | Estimate:
    """Run the flow once, as ``voxlake run`` does, and return its summary (or its estimate).

    ``parameters`` are the flow's (:func:`voxlake.flows.transcribe.transcribe_manifest`).
    ``inputs`` (:func:`voxlake.inputs.check_run_inputs`) holds the manifest already read, which
    the flow then does not read again.

    ``prefect_api`` was entered before this module was imported (see ``voxlake.prefect_api``).
    Raises the run's :class:`~voxlake.errors.VoxlakeError` when it failed before any work (a
    refused API key, an unusable output, a bad manifest).
    """
    import asyncio

    from voxlake.flows.transcribe import transcribe_manifest

    dry_run = bool(parameters.get("dry_run"))
    # A dry run sends no AssemblyAI request, so it needs no embedded server either.
    backend = contextlib.nullcontext() if dry_run else api_backend()

    async def run_flow(
        credentials: AssemblyAICredentials | None, on_progress: ProgressCallback | None
    ) -> State[Any]:
        # The flow returns its final State itself; Prefect's annotations nest it (State[State]).
        return await transcribe_manifest(
            **parameters, credentials=credentials, on_progress=on_progress, return_state=True
        )

    with (
        manifest_read_before(inputs) if inputs else contextlib.nullcontext(),
        _outcome_said_once(),
        prefect_api.connected(),
        backend as credentials,
        progress_bar(enabled=progress and not dry_run) as on_progress,
    ):
        state = asyncio.run(run_flow(credentials, on_progress))
        summary = state.result(raise_on_failure=False)
        if isinstance(summary, RunSummary):
            prefect_api.wait_until_recorded(state.state_details.flow_run_id, summary.task_runs)
    if isinstance(summary, RunSummary | Estimate):
        return summary
    if isinstance(summary, VoxlakeError):
        raise summary
    raise RuntimeError(f"flow run ended in {state.type.value}: {state.message}") from (
        summary if isinstance(summary, BaseException) else None
    )


# --- the run's outcome, said once -------------------------------------------------------------


@contextmanager
def _outcome_said_once() -> Iterator[None]:
    """Keep the flow run's own report of its end off the terminal: the CLI prints the outcome.

    Prefect logs "Finished in state Failed('…')" and the flow logs its error (``voxlake_outcome``
    in the record); with the CLI's own line that made every run-stopping error appear three
    times. The records still reach the Prefect API, whose UI shows them in the flow run's logs.
    """
    from prefect.logging.handlers import APILogHandler

    handlers = {
        handler
        for name in (None, "prefect", "prefect.flow_runs")
        for handler in logging.getLogger(name).handlers
        if not isinstance(handler, APILogHandler)
    }
    for handler in handlers:
        handler.addFilter(_not_the_outcome)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(_not_the_outcome)


def _not_the_outcome(record: logging.LogRecord) -> bool:
    if getattr(record, "voxlake_outcome", False):
        return False
    return not (
        record.name == "prefect.flow_runs" and str(record.msg).startswith("Finished in state")
    )
