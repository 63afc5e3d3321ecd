"""What `voxlake run` does around the flow: pick the API backend, show progress, print results.

With neither ``ASSEMBLYAI_API_KEY`` nor ``ASSEMBLYAI_BASE_URL`` set, the embedded local server is
started in-process on a free 127.0.0.1 port and the flow talks to it over HTTP, through exactly
the same client code path it uses against the real API. Its address and key reach the flow as
its ``credentials`` argument; nothing is written to ``os.environ``, which would leak into every
later run and child process of this one.

Ctrl-C (SIGINT, to the whole process group as a terminal sends it) cancels the flow, so Prefect
records the run as crashed and the run releases the output root's lease; the embedded server,
the temporary Prefect API and the recognition workers then stop (they ignore the SIGINT
themselves: :func:`voxlake.lifeline.sigint_blocked`). Everything the next run needs is durable
already, as after ``kill -9`` (docs/ledger.md), so this clean-up gets :data:`INTERRUPT_GRACE_S`;
after it, or at a second Ctrl-C, the process stops at once. Either way it says so in one line
(:data:`INTERRUPTED`) and exits with status 130.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars

from voxlake.errors import ConfigurationError, VoxlakeError
from voxlake.estimate import Estimate
from voxlake.inputs import RunInputs, manifest_read_before
from voxlake.prefect_api import TemporaryPrefectAPI
from voxlake.run.progress import STAGES, Progress, ProgressCallback
from voxlake.run.summary import RunSummary
from voxlake.settings import ENGINE_ENV, Settings

if TYPE_CHECKING:
    # Prefect is imported when a run starts (see run_manifest), after the temporary API.
    from prefect import State

    from voxlake.credentials import AssemblyAICredentials
    from voxlake.request import RunRequest

logger = logging.getLogger("voxlake")

# The embedded server models a free-tier account with quick jobs, so the demo shows queueing
# (``throttled``) without making anyone wait.
EMBEDDED_CONCURRENCY = 5
EMBEDDED_PROCESSING_FIXED_S = 0.3
EMBEDDED_PROCESSING_PER_AUDIO_S = 0.02

#: What `voxlake run` says when Ctrl-C stopped it.
INTERRUPTED = (
    "Interrupted: jobs already submitted are kept and will not be paid again; run the same "
    "command again to finish them."
)
#: After Ctrl-C, how long the run may take to record its end and stop its helpers.
INTERRUPT_GRACE_S = 6.0


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; :data:`INTERRUPTED` was printed to stderr."""


_said = threading.Lock()


def _say_interrupted() -> None:
    """Print :data:`INTERRUPTED` once, whichever of the clean exit and the deadline is first."""
    if _said.acquire(blocking=False):
        print(INTERRUPTED, file=sys.stderr, flush=True)


def _stop_now() -> NoReturn:
    """Leave at once, as ``kill -9`` would (what the next run needs is durable already), but
    killing the recognition workers first: they may be deep in a decode, the one place that
    does not notice its parent is gone within a second. The temporary Prefect API exits when
    its lifeline closes, with this process."""
    sphinx = sys.modules.get("voxlake.emulator.sphinx")
    if sphinx is not None:
        sphinx.kill_pool()
    _say_interrupted()
    os._exit(130)


class _Interrupts:
    """The run's SIGINT handler (see the module doc). Installed in place of Python's, so
    ``asyncio.run`` does not install its own."""

    def __init__(self) -> None:
        self.count = 0
        self.flow_run: asyncio.Future[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, flow_run: asyncio.Future[Any] | None) -> None:
        self.flow_run = flow_run
        self._loop = asyncio.get_running_loop() if flow_run is not None else None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            _stop_now()
        _quiet_libraries()
        deadline = threading.Timer(INTERRUPT_GRACE_S, _stop_now)
        deadline.daemon = True
        deadline.start()
        flow_run, loop = self.flow_run, self._loop
        if flow_run is None or loop is None or flow_run.done():
            raise RunInterrupted
        # From inside the loop, as asyncio.run's own handler does: the flow's awaits raise
        # CancelledError, its clean-up runs, and Prefect records it as crashed.
        loop.call_soon_threadsafe(flow_run.cancel)


def _quiet_libraries() -> None:
    """After Ctrl-C, keep the libraries' reports of what it cut short off the terminal:
    Prefect's "Crash detected!" and "Finished in state Crashed", one per task run, and the
    embedded server's "client disconnected" tracebacks. The run's one line says it all; the
    Prefect API still records the flow run as crashed."""
    for handler in logging.getLogger("prefect").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.addFilter(lambda record: False)
    for handler in logging.getLogger().handlers:  # voxlake run's own, where the rest goes
        handler.addFilter(lambda record: record.name.startswith("voxlake"))


def _api_configured() -> bool:
    return any(os.environ.get(v) for v in ("ASSEMBLYAI_API_KEY", "ASSEMBLYAI_BASE_URL"))


def embedded_state_dir(output: str) -> Path:
    """Where the embedded server of runs into ``output`` keeps its uploads and jobs:
    ``$XDG_CACHE_HOME/voxlake/embedded-server/<hash of the output root>`` (``~/.cache`` without
    XDG_CACHE_HOME). One per output root, so the run after an interrupted one finds the jobs
    its ledger names; the root's lease already keeps two runs from using one at once."""
    from voxlake.storage import is_s3_url

    root = output if is_s3_url(output) else str(Path(output).expanduser().resolve())
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(root.encode()).hexdigest()[:16]
    return Path(cache) / "voxlake" / "embedded-server" / digest


@contextmanager
def api_backend(
    output: str | None = None, *, engine: str = "auto"
) -> Iterator[AssemblyAICredentials | None]:
    """The credentials for the flow: None when the environment configures the API (the flow
    reads it), else those of the embedded server, started here for the block's duration. With
    ``output``, the server keeps its state in :func:`embedded_state_dir` (else in memory);
    ``engine`` is its transcription engine (the settings' ``engine``)."""
    if _api_configured():
        yield None
        return
    from voxlake.credentials import AssemblyAICredentials
    from voxlake.emulator import DEFAULT_API_KEY, EmulatorConfig, LocalServer, StateDirInUseError

    state_dir = None
    if output is not None:
        state_dir = embedded_state_dir(output)
        state_dir.mkdir(parents=True, exist_ok=True)
        # For whoever looks into the cache: which output root this directory serves.
        (state_dir / "output-root.txt").write_text(f"{output}\n")
    config = EmulatorConfig(
        concurrency_limit=EMBEDDED_CONCURRENCY,
        processing_fixed_s=EMBEDDED_PROCESSING_FIXED_S,
        processing_per_audio_s=EMBEDDED_PROCESSING_PER_AUDIO_S,
        engine=engine,
        state_dir=state_dir,
    )
    # The embedded server's own start-up chatter (demo key, address) is said once, below.
    logging.getLogger("voxlake.emulator").setLevel(logging.ERROR)
    server = LocalServer(config, port=0)
    try:
        server.start()
    except StateDirInUseError as exc:
        raise ConfigurationError(
            f"{exc}: another voxlake run into {output} is running; wait for it to finish"
        ) from None
    except ValueError as exc:  # the only one: an engine that does not exist or cannot run
        raise ConfigurationError(f"{ENGINE_ENV}={engine}: {exc}") from None
    try:
        logger.info(
            "No ASSEMBLYAI_API_KEY set: using the embedded local AssemblyAI-compatible server "
            "at %s",
            server.base_url,
        )
        yield AssemblyAICredentials(api_key=DEFAULT_API_KEY, base_url=server.base_url)
    finally:
        server.stop()


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """A rich progress bar per stage; yields the run's ``on_progress`` callback that feeds them.

    Each :class:`~voxlake.run.progress.Progress` event sets its stage's bar. The bars learn
    their total from the run's first events, once it has planned its items against the ledger,
    so the manifest is read once, by the flow.
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
    with Bars(*columns, transient=False) as progress:
        bars = {stage: progress.add_task(stage, total=None) for stage in STAGES}

        def show(event: Progress) -> None:
            progress.update(bars[event.stage], completed=event.done, total=event.total)

        yield show


def run_manifest(
    request: RunRequest,
    *,
    prefect_api: TemporaryPrefectAPI,
    progress: bool,
    settings: Settings,
    inputs: RunInputs | None = None,
) -> RunSummary | Estimate:
    """Run the flow once with ``request``'s parameters, as ``voxlake run`` does, and return its
    summary (or its estimate).

    ``inputs`` (:func:`voxlake.inputs.check_run_inputs`) holds the manifest already read, which
    the flow then does not read again. ``settings`` are those the CLI read at its edge.

    ``prefect_api`` was entered before this module was imported (see ``voxlake.prefect_api``).
    Raises the run's :class:`~voxlake.errors.VoxlakeError` when it failed before any work (a
    refused API key, an unusable output, a bad manifest).
    """
    from voxlake.flows.transcribe import transcribe_manifest

    parameters = request.flow_parameters()
    # A dry run sends no AssemblyAI request, so it needs no embedded server either.
    backend = (
        contextlib.nullcontext()
        if request.dry_run
        else api_backend(request.output, engine=settings.engine)
    )

    interrupts = _Interrupts()

    async def run_flow(
        credentials: AssemblyAICredentials | None, on_progress: ProgressCallback | None
    ) -> State[Any] | None:
        # The flow returns its final State itself; Prefect's annotations nest it (State[State]).
        flow_run = asyncio.ensure_future(
            transcribe_manifest(
                **parameters, credentials=credentials, on_progress=on_progress, return_state=True
            )
        )
        interrupts.watch(flow_run)
        try:
            return await flow_run
        except asyncio.CancelledError:
            if not interrupts.count:
                raise
            # asyncio.run waits for its default executor's threads before it returns; one may
            # be importing the report's libraries (seconds), which an interrupted run never
            # needs. A fresh executor is waited for instead, and this process ends with
            # os._exit (_stop_now), so nothing waits for the old one.
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=1))
            return None
        finally:
            interrupts.watch(None)

    previous = signal.signal(signal.SIGINT, interrupts)
    try:
        with (
            manifest_read_before(inputs) if inputs else contextlib.nullcontext(),
            _outcome_said_once(),
            prefect_api.connected(),
            backend as credentials,
            progress_bar(enabled=progress and not request.dry_run) as on_progress,
        ):
            state = asyncio.run(run_flow(credentials, on_progress))
            if state is None or interrupts.count:
                raise RunInterrupted
            summary = state.result(raise_on_failure=False)
            if isinstance(summary, RunSummary):
                prefect_api.wait_until_recorded(state.state_details.flow_run_id, summary.task_runs)
    finally:
        if interrupts.count:
            # The run is recorded and its helpers stopped: leave now. What is left are
            # threads whose work the next run does again (the report's imports, a decode).
            _stop_now()
        signal.signal(signal.SIGINT, previous)
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
