"""The job lifecycle queued -> processing -> completed|error, on the server's event loop.

One account-wide concurrency limit. Jobs over it wait in a FIFO queue and get ``throttled:
true`` (kept true afterwards, so clients can see the job was held back); nothing is rejected.
Engine work runs in a thread pool so the event loop keeps serving requests. The processing time
is max(engine time, fixed + per_audio * duration), padded with an asyncio timer.

A job that takes over a slot freed by a finished job counts its processing time from when that
job was *due* to finish, not from when this busy event loop got round to it. Otherwise the
loop's lateness (a few to a hundred ms on a loaded machine) would add up along each slot's
chain of jobs (20 in a row for 2,000 jobs on 100 slots) and make the server slower than its own
model, which the real service is not. A job still never starts before it was submitted, and no
more than ``limit`` are ever processing at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from voxlake.emulator.engines import Engine, EngineError, EngineResult
from voxlake.emulator.stats import Stats
from voxlake.emulator.store import TranscriptRecord, TranscriptStore, wall_stamp
from voxlake.emulator.understanding import understand

log = logging.getLogger("voxlake.emulator.scheduler")

SERVER_ERROR = "Server error, developers have been alerted."

#: Resolves a job's media to a local path (downloading if needed) and a cleanup callback.
MediaResolver = Callable[[TranscriptRecord], Awaitable[tuple[Path, Callable[[], None]]]]


class Scheduler:
    def __init__(
        self,
        *,
        limit: int,
        engine: Engine,
        store: TranscriptStore,
        stats: Stats,
        executor: ThreadPoolExecutor,
        resolve_media: MediaResolver,
        fixed_s: float,
        per_audio_s: float,
        clock: Callable[[], float],
        on_finished: Callable[[TranscriptRecord], None],
    ) -> None:
        self.limit = limit
        self.engine = engine
        self.store = store
        self.stats = stats
        self.executor = executor
        self.resolve_media = resolve_media
        self.fixed_s = fixed_s
        self.per_audio_s = per_audio_s
        self.clock = clock
        self.on_finished = on_finished
        self._queue: deque[tuple[TranscriptRecord, float]] = deque()  # (job, loop time queued)
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def in_flight(self, rec_id: str) -> bool:
        return rec_id in self._running or any(r.id == rec_id for r, _ in self._queue)

    def submit(self, rec: TranscriptRecord) -> None:
        """Queue the job; it starts on a later loop iteration so the POST answers ``queued``."""
        if len(self._running) + len(self._queue) >= self.limit:
            rec.throttled = True  # it will have to wait for a slot
        loop = asyncio.get_running_loop()
        self._queue.append((rec, loop.time()))
        self.stats.change(lambda s: setattr(s, "queued", s.queued + 1))
        loop.call_soon(self._pump)

    def _pump(self, freed_due: float | None = None) -> None:
        """Start queued jobs on free slots; ``freed_due``: when the job that freed one was due."""
        loop = asyncio.get_running_loop()
        while self._queue and len(self._running) < self.limit:
            rec, queued_at = self._queue.popleft()
            if rec.deleted:
                self.stats.change(lambda s: setattr(s, "queued", s.queued - 1))
                continue
            now = loop.time()
            start = now if freed_due is None else min(max(freed_due, queued_at), now)
            freed_due = None  # one finished job frees one slot
            self._running.add(rec.id)
            task = loop.create_task(self._run(rec, start))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _process(self, path: Path, rec: TranscriptRecord) -> EngineResult:
        """In a worker thread: recognition, then the speech-understanding features asked for."""
        return understand(self.engine.transcribe(path, dict(rec.params)), rec.params)

    async def _run(self, rec: TranscriptRecord, t0: float) -> None:
        """Process ``rec``; its modelled processing time counts from ``t0`` (loop time)."""
        loop = asyncio.get_running_loop()
        self.store.set_status(rec, "processing")

        def started(s: Stats) -> None:
            s.queued -= 1
            s.processing += 1
            s.max_concurrent_processing = max(s.max_concurrent_processing, s.processing)
            s.started_order.append(rec.id)

        self.stats.change(started)
        duration = 0.0
        cleanup: Callable[[], None] = lambda: None  # noqa: E731
        try:
            path, cleanup = await self.resolve_media(rec)
            result = await loop.run_in_executor(self.executor, self._process, path, rec)
            duration = result.audio_duration
            rec.result = result
            status = "completed"
        except EngineError as exc:
            rec.error = exc.message
            status = "error"
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("engine failure on transcript %s", rec.id)
            rec.error = SERVER_ERROR
            status = "error"
        finally:
            with contextlib.suppress(Exception):
                cleanup()
        due = t0 + self.fixed_s + self.per_audio_s * duration
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        else:
            due = loop.time()  # the engine itself took longer than the model
        rec.completed = wall_stamp(self.clock())
        self.store.set_status(rec, status)
        self._running.discard(rec.id)

        def finished(s: Stats) -> None:
            s.processing -= 1
            if status == "completed":
                s.completed += 1
            else:
                s.errored += 1
            s.finished_order.append(rec.id)

        self.stats.change(finished)
        self._pump(due)
        self.on_finished(rec)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
