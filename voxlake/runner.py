"""What `voxlake run` does around the job: pick the API backend, show progress, print results.

With neither ``ASSEMBLYAI_API_KEY`` nor ``ASSEMBLYAI_BASE_URL`` set, the embedded local server is
started in-process on a free 127.0.0.1 port and the job talks to it over HTTP, through exactly
the same client code path it uses against the real API. Its address and key reach the job as
its client's settings; nothing is written to ``os.environ``, which would leak into every later
run and child process of this one.

With a Prefect API configured (:func:`voxlake.prefect_api.configured`) the job runs as the flow
``transcribe_manifest`` and is recorded there; with none, in this process without Prefect
(:mod:`voxlake.run.job`).

Ctrl-C (SIGINT, to the whole process group as a terminal sends it) cancels the job, so the run
releases the output root's lease (and Prefect records the flow run as crashed); the embedded
server and the recognition workers then stop (they ignore the SIGINT themselves:
:func:`voxlake.lifeline.sigint_blocked`). Everything the next run needs is durable already, as
after ``kill -9`` (docs/ledger.md), so this clean-up gets :data:`INTERRUPT_GRACE_S`; after it,
or at a second Ctrl-C, the process stops at once. Either way it says so in one line
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
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import SecretStr
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars

from voxlake.errors import ConfigurationError, VoxlakeError
from voxlake.estimate import Estimate
from voxlake.inputs import RunInputs, manifest_read_before
from voxlake.run.progress import STAGES, Progress, ProgressCallback
from voxlake.run.summary import RunSummary
from voxlake.settings import ENGINE_ENV, Settings

if TYPE_CHECKING:
    from voxlake.client import AssemblyAIClient
    from voxlake.request import RunRequest
    from voxlake.run.job import JobEnds

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
    does not notice its parent is gone within a second."""
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
        self.job: asyncio.Future[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, job: asyncio.Future[Any] | None) -> None:
        self.job = job
        self._loop = asyncio.get_running_loop() if job is not None else None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1:
            _stop_now()
        _quiet_libraries()
        deadline = threading.Timer(INTERRUPT_GRACE_S, _stop_now)
        deadline.daemon = True
        deadline.start()
        job, loop = self.job, self._loop
        if job is None or loop is None or job.done():
            raise RunInterrupted
        # From inside the loop, as asyncio.run's own handler does: the job's awaits raise
        # CancelledError, its clean-up runs (and Prefect records a flow run as crashed).
        loop.call_soon_threadsafe(job.cancel)


def _quiet_libraries() -> None:
    """After Ctrl-C, keep the libraries' reports of what it cut short off the terminal:
    Prefect's "Crash detected!" and "Finished in state Crashed", one per task run, and the
    embedded server's "client disconnected" tracebacks. The run's one line says it all; a
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


def warm_embedded_engine(engine: str) -> None:
    """Start the embedded server's speech-recognition workers now, when the run will use it:
    they import and load their model on the other core while this process imports the rest
    (the server's start finds them ready)."""
    if _api_configured():
        return
    from voxlake.emulator.engines import resolve_engine_name

    if resolve_engine_name(engine) == "sphinx":
        from voxlake.emulator.sphinx import warm_pool

        warm_pool()


@dataclass(frozen=True)
class Endpoint:
    """The AssemblyAI API a run talks to when the environment does not configure one."""

    base_url: str
    api_key: SecretStr
    #: Subscribes a listener to the server's job ends (the embedded server, in this process).
    on_job_end: JobEnds | None = None

    def client(self) -> AssemblyAIClient:
        from voxlake.client import AssemblyAIClient

        return AssemblyAIClient(api_key=self.api_key, base_url=self.base_url)


@contextmanager
def api_backend(output: str | None = None, *, engine: str = "auto") -> Iterator[Endpoint | None]:
    """The run's AssemblyAI endpoint: None when the environment configures the API (the job
    reads it), else the embedded server's, started here for the block's duration. With
    ``output``, the server keeps its state in :func:`embedded_state_dir` (else in memory);
    ``engine`` is its transcription engine (the settings' ``engine``)."""
    if _api_configured():
        yield None
        return
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
        yield Endpoint(
            base_url=server.base_url,
            api_key=SecretStr(DEFAULT_API_KEY),
            on_job_end=server.on_job_end,
        )
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
    progress: bool,
    settings: Settings,
    inputs: RunInputs | None = None,
) -> RunSummary | Estimate:
    """Run the job once with ``request``, as ``voxlake run`` does, and return its summary (or
    its estimate): as the Prefect flow when a Prefect API is configured, else in this process.

    ``inputs`` (:func:`voxlake.inputs.check_run_inputs`) holds the manifest already read, which
    the job then does not read again. ``settings`` are those the CLI read at its edge.

    Raises the run's :class:`~voxlake.errors.VoxlakeError` when it failed before any work (a
    refused API key, an unusable output, a bad manifest).
    """
    from voxlake.prefect_api import configured

    in_prefect = configured()
    # A dry run sends no AssemblyAI request, so it needs no embedded server either.
    backend = (
        contextlib.nullcontext()
        if request.dry_run
        else api_backend(request.output, engine=settings.engine)
    )
    interrupts = _Interrupts()

    async def run_job(endpoint: Endpoint | None, on_progress: ProgressCallback | None) -> Any:
        job = asyncio.ensure_future(
            _flow_run(request, endpoint, on_progress)
            if in_prefect
            else _in_process(request, endpoint, settings, on_progress)
        )
        interrupts.watch(job)
        try:
            return await job
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
            _outcome_said_once() if in_prefect else contextlib.nullcontext(),
            backend as endpoint,
            progress_bar(enabled=progress and not request.dry_run) as on_progress,
        ):
            outcome = asyncio.run(run_job(endpoint, on_progress))
            if not isinstance(outcome, RunSummary | Estimate) or interrupts.count:
                raise RunInterrupted
    finally:
        if interrupts.count:
            # The run is recorded and its helpers stopped: leave now. What is left are
            # threads whose work the next run does again (the report's imports, a decode).
            _stop_now()
        signal.signal(signal.SIGINT, previous)
    return outcome


async def _in_process(
    request: RunRequest,
    endpoint: Endpoint | None,
    settings: Settings,
    on_progress: ProgressCallback | None,
) -> RunSummary | Estimate:
    """The job in this process (no Prefect API configured); raises its VoxlakeError."""
    from voxlake.client import AssemblyAIClient
    from voxlake.run.job import Host, in_process, transcribe

    async def client() -> AssemblyAIClient:
        return endpoint.client() if endpoint is not None else AssemblyAIClient()

    # Its INFO lines are a flow run's log in Prefect's UI; here the CLI prints the outcome.
    job_log = logging.getLogger("voxlake.run.job")
    job_log.setLevel(max(job_log.getEffectiveLevel(), logging.WARNING))
    host = Host(
        run_id=str(uuid.uuid4()),
        stages=in_process(),
        logger=job_log,
        job_ends=endpoint.on_job_end if endpoint is not None else None,
    )
    return await transcribe(
        request, host=host, client=client, environment=settings, on_progress=on_progress
    )


async def _flow_run(
    request: RunRequest, endpoint: Endpoint | None, on_progress: ProgressCallback | None
) -> RunSummary | Estimate:
    """The job as the flow ``transcribe_manifest`` on the configured Prefect API; raises its
    VoxlakeError."""
    from voxlake.credentials import AssemblyAICredentials
    from voxlake.flows.transcribe import transcribe_manifest

    credentials = (
        None
        if endpoint is None
        else AssemblyAICredentials(api_key=endpoint.api_key, base_url=endpoint.base_url)
    )
    # The flow returns its final State itself; Prefect's annotations nest it (State[State]).
    state: Any = await transcribe_manifest(
        **request.flow_parameters(),
        credentials=credentials,
        on_progress=on_progress,
        job_ends=endpoint.on_job_end if endpoint is not None else None,
        return_state=True,
    )
    outcome = await state.aresult(raise_on_failure=False)
    if isinstance(outcome, RunSummary | Estimate):
        return outcome
    if isinstance(outcome, VoxlakeError):
        raise outcome
    raise RuntimeError(f"flow run ended in {state.type.value}: {state.message}") from (
        outcome if isinstance(outcome, BaseException) else None
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
