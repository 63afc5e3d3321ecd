"""The ``sphinx`` engine: real (if modest) English speech recognition with PocketSphinx.

PocketSphinx's PyPI wheel ships the US English acoustic model, language model and dictionary,
so nothing is downloaded at run time. Media is decoded by :mod:`voxlake.emulator.decode` (PyAV).

How a file is recognised (:func:`recognise`, run in a worker process):

1. The first audio stream is decoded and resampled to 16 kHz mono, packet by packet.
2. PocketSphinx's voice-activity endpointer cuts the stream into speech regions; each region
   is one recogniser utterance (regions longer than ``MAX_UTTERANCE_S`` are cut there). Memory is
   bounded by one utterance's search, whatever the file's length.
3. For each utterance the decoder's word lattice is scored forward-backward
   (``Decoder.get_prob``), and every word of the best path gets its **lattice posterior
   probability** as its confidence: the share of the lattice's probability mass, acoustic and
   language model together, that flows through that word at that time. Words the recogniser was
   unsure of (competing hypotheses in the lattice) get low posteriors.
4. Filler tokens (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``…) are dropped, pronunciation variants
   (``the(2)``) lose their suffix, and frame indices (100 per second) become milliseconds.

Recognition is CPU-bound and PocketSphinx holds the GIL while it decodes, so it runs in a
process pool (one worker per CPU, each loading the model once; Ctrl-C is left to the server,
which kills them when it stops: see :func:`kill_pool`). The workers start and load the model
as soon as an engine is made (:func:`warm_pool`), so the first job does not wait for them.
The server's scheduler admits at most ``concurrency_limit`` jobs at a time, so at most
``min(concurrency_limit, CPUs)`` files are recognised in parallel and the event loop stays free
to answer requests.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import resource_tracker
from pathlib import Path
from typing import Any

from voxlake.emulator.engines import (
    MIN_DURATION_S,
    EngineError,
    EngineResult,
    EngineWord,
    not_audio_message,
)
from voxlake.lifeline import sigint_blocked

log = logging.getLogger("voxlake.emulator.sphinx")

#: A speech region longer than this is cut into several utterances (bounds the search's memory).
MAX_UTTERANCE_S = 30.0
#: A pause at least this long between two words ends a sentence (when punctuating).
SENTENCE_PAUSE_MS = 450
TOO_SHORT = "Audio duration is too short."

_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
_VARIANT = re.compile(r"\(\d+\)$")


def available() -> bool:
    """True when pocketsphinx and PyAV can be imported (checked without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("pocketsphinx", "av"))


def model_name() -> str:
    """``speech_model_used``: says plainly that a local PocketSphinx model did the work."""
    try:
        version = importlib.metadata.version("pocketsphinx")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    return f"pocketsphinx-{version}-en-us"


# -- recognition (runs in a worker process) -------------------------------------------------


@dataclass(frozen=True)
class Recognition:
    """What the worker sends back; plain tuples keep the pickle small for hour-long files."""

    #: (text, start_ms, end_ms, confidence, utterance index)
    words: list[tuple[str, int, int, float, int]]
    duration_s: float
    channels: int
    speech_s: float  # seconds the endpointer classified as speech (inside the trim window)
    utterances: int
    #: Seconds the worker spent on this file (decoding the media, recognising it), without
    #: loading the model: the engine's own time for the file.
    decode_s: float = 0.0
    #: Seconds spent loading the model before it (a worker's first file only).
    model_load_s: float = 0.0


#: PocketSphinx options (its defaults otherwise): cepstral mean normalisation over each whole
#: utterance; language weight 6.0 instead of 6.5 (on data/ the overall WER is 24.4 % against
#: 25.1 %); the lattice is kept for word posteriors (``bestpath``).
DECODER_OPTIONS: dict[str, Any] = {
    "samprate": 16_000,
    "cmn": "batch",
    "lw": 6.0,
    "bestpath": True,
    "loglevel": "ERROR",
}

#: Endpointer (voice activity detection) options; see ``pocketsphinx.Endpointer``.
ENDPOINTER_OPTIONS: dict[str, Any] = {}

_decoder: Any = None
_initial_cmn = ""


def _get_decoder() -> Any:
    """The worker's decoder, loaded once per process, reset to its initial state.

    The decoder carries its cepstral-mean estimate from one utterance to the next; putting
    back the model's initial estimate before each file makes a file's transcript independent
    of which worker recognised it and of what that worker did before.
    """
    global _decoder, _initial_cmn
    if _decoder is None:
        from pocketsphinx import Decoder

        _decoder = Decoder(**DECODER_OPTIONS)
        _initial_cmn = _decoder.get_cmn()
    _decoder.set_cmn(_initial_cmn)
    return _decoder


class _Utterances:
    """Collects the speech of one region, then recognises it as one utterance.

    A whole utterance (at most ``MAX_UTTERANCE_S`` of PCM, under 1 MB) is buffered so that the
    decoder can normalise the cepstral mean over it (``-cmn batch``) instead of adapting as it
    goes, which otherwise garbles the first words of a file.
    """

    def __init__(self, decoder: Any) -> None:
        self.decoder = decoder
        self.frate = int(decoder.config["frate"])
        self.words: list[tuple[str, int, int, float, int]] = []
        self.count = 0
        self.active = False
        self.offset_s = 0.0
        self.pcm = bytearray()
        self.speech_s = 0.0

    @property
    def fed_s(self) -> float:
        return len(self.pcm) / 32_000  # 16 kHz x 2 bytes

    def start(self, at_s: float) -> None:
        self.active, self.offset_s = True, at_s
        self.pcm.clear()

    def feed(self, pcm: bytes) -> None:
        self.pcm += pcm

    def end(self) -> None:
        if not self.active:
            return
        self.active = False
        self.speech_s += self.fed_s
        if len(self.pcm) >= 2 * 160:  # at least one 10 ms frame
            self.decoder.start_utt()
            self.decoder.process_raw(bytes(self.pcm), no_search=False, full_utt=True)
            self.decoder.end_utt()
            self._collect()
        self.pcm.clear()
        self.count += 1

    def _collect(self) -> None:
        d = self.decoder
        if d.hyp() is None:
            return
        # Forward-backward over the word lattice: afterwards each segment's ``prob`` is the
        # word's posterior probability (without it, some builds report 1.0 for every word).
        d.get_prob()
        ms_per_frame = 1000 / self.frate
        base_ms = self.offset_s * 1000
        for seg in d.seg():
            word = seg.word
            if _FILLER.match(word):
                continue
            word = _VARIANT.sub("", word)
            start = round(base_ms + seg.start_frame * ms_per_frame)
            end = round(base_ms + (seg.end_frame + 1) * ms_per_frame)
            confidence = round(min(1.0, max(0.0, float(seg.prob))), 4)
            self.words.append((word, start, max(end, start + 1), confidence, self.count))


def recognise(path: str, start_ms: int | None = None, end_ms: int | None = None) -> Recognition:
    """Recognise one file. Raises ``EngineError`` with AssemblyAI's wording on bad input."""
    from pocketsphinx import Endpointer

    from voxlake.emulator.decode import TARGET_RATE, AudioStream, NotAudioError

    started = time.perf_counter()  # after the imports: a worker's start-up, not this file's

    try:
        stream = AudioStream(path)
    except NotAudioError:
        raise EngineError(not_audio_message(Path(path))) from None
    loading, fresh = time.perf_counter(), _decoder is None
    decoder = _get_decoder()
    model_load_s = time.perf_counter() - loading if fresh else 0.0
    utts = _Utterances(decoder)
    ep = Endpointer(sample_rate=TARGET_RATE, **ENDPOINTER_OPTIONS)
    frame_bytes = ep.frame_bytes
    lo = int((start_ms or 0) * TARGET_RATE / 1000) * 2  # byte offsets into the PCM stream
    hi = int(end_ms * TARGET_RATE / 1000) * 2 if end_ms is not None else None
    ep_origin_s = lo / 2 / TARGET_RATE  # the endpointer's clock starts at the trim start
    buf = bytearray()
    pos = 0  # absolute byte offset of the next PCM byte from the decoder

    def handle(speech: bytes | None) -> None:
        if speech is None:
            return
        if not utts.active:
            utts.start(ep_origin_s + ep.speech_start)
        utts.feed(speech)
        if not ep.in_speech:
            utts.end()
        elif utts.fed_s >= MAX_UTTERANCE_S:
            # A very long region (music, no pauses): cut it so the search stays bounded.
            resume_at = utts.offset_s + utts.fed_s
            utts.end()
            utts.start(resume_at)

    try:
        with stream:
            for chunk in stream.pcm():
                # Keep only the bytes inside the [lo, hi) trim window.
                c_lo, c_hi = pos, pos + len(chunk)
                pos = c_hi
                if c_hi <= lo or (hi is not None and c_lo >= hi):
                    continue
                a = max(0, lo - c_lo)
                b = len(chunk) if hi is None else min(len(chunk), hi - c_lo)
                buf += chunk[a:b]
                n = len(buf) - len(buf) % frame_bytes
                for i in range(0, n, frame_bytes):
                    handle(ep.process(bytes(buf[i : i + frame_bytes])))
                del buf[:n]
            if ep.in_speech:
                # Flush the endpointer's window; it wants at least one sample.
                handle(ep.end_stream(bytes(buf) or b"\x00\x00"))
            utts.end()
            duration_s, channels = stream.seconds, stream.info.channels
    finally:
        utts.pcm.clear()
    if duration_s < MIN_DURATION_S:
        raise EngineError(TOO_SHORT)
    return Recognition(
        words=utts.words,
        duration_s=duration_s,
        channels=channels,
        speech_s=utts.speech_s,
        utterances=utts.count,
        decode_s=time.perf_counter() - started - model_load_s,
        model_load_s=model_load_s,
    )


# -- the process pool ------------------------------------------------------------------------

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
# Each worker posts its pid here as it starts (``_worker_init``): the executor has no public
# list of its processes, and killing every child of the process (``active_children()``) could
# hit children that are not the pool's. One queue per pool, dropped with it (_stop_pool).
_announced: Any = None  # a spawn-context SimpleQueue of pids
_worker_pid_set: set[int] = set()
# Engines (one per server) not yet closed: the pool is shared by every server of the process.
_open_engines = 0


def pool_size() -> int:
    """One worker per CPU this process may use."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 32))


def _get_pool() -> ProcessPoolExecutor:
    global _pool, _announced
    with _pool_lock:
        if _pool is None:
            # Started now, not during the first submit: starting it unblocks SIGINT in the
            # calling thread, which would undo the block _submit puts around the workers' start.
            resource_tracker.ensure_running()
            # "spawn": the server process has threads (uvicorn, the engine pool), and forking a
            # threaded process can deadlock the child.
            context = multiprocessing.get_context("spawn")
            _announced = context.SimpleQueue()
            _pool = ProcessPoolExecutor(
                max_workers=pool_size(),
                mp_context=context,
                initializer=_worker_init,
                initargs=(os.getpid(), _announced),
            )
        return _pool


def _workers() -> list[multiprocessing.process.BaseProcess]:
    """The live pool workers: this process's children whose pid a worker announced."""
    if _announced is not None:
        while not _announced.empty():  # only this process reads the queue
            _worker_pid_set.add(_announced.get())
    alive = multiprocessing.active_children()  # also reaps children that have ended
    _worker_pid_set.intersection_update(p.pid for p in alive)
    return [p for p in alive if p.pid in _worker_pid_set]


def _worker_init(parent_pid: int, announced: Any) -> None:
    """In each worker: say its pid to the server (``_workers``), and exit when the server
    process is gone (killed without a clean shutdown), instead of lingering as an orphan
    holding a loaded model."""
    announced.put(os.getpid())

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="vx-orphan-watch", daemon=True).start()


def _load_model() -> None:
    """What a worker's first file would otherwise wait for: the imports and the model."""
    import av  # noqa: F401  (imported by voxlake.emulator.decode when it opens a file)
    from pocketsphinx import Endpointer  # noqa: F401

    from voxlake.emulator import decode  # noqa: F401

    _get_decoder()


def warm_pool() -> None:
    """Start the workers and load their models now, while the server's first job is still
    being uploaded: that took ~0.5 s of a one-clip run (benchmarks/RESULTS.md, B10). A worker
    that takes two of these loads once, and the other loads at its first job."""
    pool = _get_pool()
    with sigint_blocked():  # as in _submit: the workers start inside submit
        for _ in range(pool_size()):
            pool.submit(_load_model)


def _submit(path: Path, start_ms: int | None, end_ms: int | None) -> Future[Recognition]:
    pool = _get_pool()
    # Workers start on demand, inside submit: with SIGINT blocked they ignore a Ctrl-C sent to
    # the whole process group (a terminal's), even while still importing. Before, they died of
    # it mid-job, and the server respawned them for its next job while it was stopping.
    with sigint_blocked():
        return pool.submit(recognise, str(path), start_ms, end_ms)


def shutdown_pool() -> None:
    """Stop the worker processes (they are started again on demand)."""
    _stop_pool(kill=False)


def kill_pool() -> None:
    """Kill the worker processes now, mid-job: what the server does when it stops, so that
    stopping never waits for a recognition to finish (the job is unfinished either way)."""
    _stop_pool(kill=True)


def _stop_pool(*, kill: bool) -> None:
    global _pool, _announced
    with _pool_lock:
        # The executor has no public way to end busy workers (3.14 adds kill_workers).
        workers = _workers() if kill and _pool is not None else []
        pool, _pool = _pool, None
        announced, _announced = _announced, None
        _worker_pid_set.clear()
    if pool is None:
        return
    for process in workers:
        with contextlib.suppress(OSError, ValueError):
            process.kill()
    # Quick with its workers dead. Waiting, then dropping the pool and its pid queue, lets
    # multiprocessing release their queues' semaphores now: a run that leaves by os._exit
    # (runner._stop_now) skips the exit-time clean-up, and multiprocessing's resource
    # tracker then reports them as leaked.
    pool.shutdown(wait=True, cancel_futures=True)
    announced.close()


def worker_pids() -> list[int]:
    """PIDs of the live recognition workers (for memory measurements)."""
    with _pool_lock:
        return [p.pid for p in _workers() if p.pid is not None]


# -- formatting --------------------------------------------------------------------------------


def format_words(
    raw: list[tuple[str, int, int, float, int]], *, punctuate: bool, format_text: bool
) -> list[tuple[str, int, int, float]]:
    """AssemblyAI-style text on the word list.

    The recogniser gives lower-case words without punctuation. A sentence ends at the end of
    a speech region or at a pause of ``SENTENCE_PAUSE_MS`` or more. ``punctuate`` puts a period
    on a sentence's last word; ``format_text`` capitalises its first word and the pronoun "I"
    (``i``, ``i'm``, ``i've``…).
    """
    out: list[tuple[str, int, int, float]] = []
    new_sentence = True
    for i, (text, start, end, conf, utt) in enumerate(raw):
        nxt = raw[i + 1] if i + 1 < len(raw) else None
        ends = nxt is None or nxt[4] != utt or nxt[1] - end >= SENTENCE_PAUSE_MS
        word = text
        if format_text:
            if word == "i" or word.startswith("i'"):
                word = "I" + word[1:]
            if new_sentence:
                word = word[:1].upper() + word[1:]
        if punctuate and ends:
            word += "."
        out.append((word, start, end, conf))
        new_sentence = ends
    return out


# -- the engine ------------------------------------------------------------------------------


class SphinxEngine:
    """PocketSphinx US English, run in worker processes. See the module docstring."""

    name = "sphinx"

    def __init__(self) -> None:
        global _open_engines
        if not available():
            raise ValueError("the sphinx engine needs the pocketsphinx and av packages")
        self.model = model_name()
        self._closed = False
        with _pool_lock:
            _open_engines += 1
        warm_pool()

    def close(self) -> None:
        """The server stops: the last open engine of the process kills the shared workers."""
        global _open_engines
        with _pool_lock:
            if self._closed:
                return
            self._closed = True
            _open_engines -= 1
            last = _open_engines == 0
        if last:
            kill_pool()

    def transcribe(self, path: Path, params: dict[str, Any]) -> EngineResult:
        start_ms, end_ms = params.get("audio_start_from"), params.get("audio_end_at")
        if self._closed:  # a job the stopping server had handed to a thread: start no worker
            raise RuntimeError("the sphinx engine is closed")
        try:
            rec = _submit(path, start_ms, end_ms).result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory). Start afresh for the next job.
            shutdown_pool()
            raise
        # The engine's own time per file, apart from the worker's start-up (benchmarks/B10).
        log.info(
            "recognised %.2f s of audio in %.3f s (model loaded first in %.3f s)",
            rec.duration_s,
            rec.decode_s,
            rec.model_load_s,
        )
        threshold = params.get("speech_threshold")
        if threshold is not None and rec.duration_s > 0:
            window_s = rec.duration_s
            if start_ms is not None or end_ms is not None:
                hi = rec.duration_s if end_ms is None else min(end_ms / 1000, rec.duration_s)
                window_s = max(1e-9, hi - (start_ms or 0) / 1000)
            fraction = min(1.0, rec.speech_s / window_s)
            if fraction < float(threshold):
                raise EngineError(
                    f"Audio speech threshold {fraction:.4f} is below the requested speech "
                    f"threshold value {float(threshold)}"
                )
        words = format_words(
            rec.words,
            punctuate=params.get("punctuate", True) is not False,
            format_text=params.get("format_text", True) is not False,
        )
        # One voice model, no diarisation: with speaker_labels every word is speaker "A"; with
        # multichannel the channels were mixed down, so everything is channel "1".
        speaker = "A" if params.get("speaker_labels") or params.get("multichannel") else None
        channel = "1" if params.get("multichannel") else None
        return EngineResult(
            words=[EngineWord(t, s, e, c, speaker, channel) for t, s, e, c in words],
            audio_duration=rec.duration_s,
            language_code="en_us",
            speech_model_used=self.model,
            audio_channels=rec.channels,
            extra={"speech_s": rec.speech_s, "utterances": rec.utterances},
        )
