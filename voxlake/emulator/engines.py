"""Transcription engines: a tiny protocol, the deterministic scripted engine, and selection.

The real recogniser, ``sphinx`` (PocketSphinx), lives in ``voxlake.emulator.sphinx`` and is
registered at the bottom of this module; ``auto`` (the default) picks it when it is importable.

An engine turns a media file into words. It runs in a worker thread, so it may block. Documented
processing failures are raised as ``EngineError(message)``; the message becomes the transcript's
``error`` verbatim, so it must use AssemblyAI's wording.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from voxlake.emulator.media import probe, read_riff_text, sniff_type

MIN_DURATION_S = 0.160
DEFAULT_SPEECH_MODEL = "universal-3-pro"


class EngineError(Exception):
    """A processing failure reported to the user as ``status: error`` with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class EngineWord:
    text: str
    start: int  # ms
    end: int  # ms
    confidence: float
    speaker: str | None = None
    channel: str | None = None


@dataclass(frozen=True)
class EngineResult:
    words: list[EngineWord]
    audio_duration: float  # seconds
    language_code: str
    speech_model_used: str
    audio_channels: int = 1
    language_confidence: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    name: str

    def transcribe(self, path: Path, params: dict[str, Any]) -> EngineResult: ...


def close_engine(engine: Engine) -> None:
    """Release what an engine holds (the sphinx engine's worker processes), if it has a
    ``close`` method: called once when its server stops."""
    close = getattr(engine, "close", None)
    if callable(close):
        close()


_ENGINES: dict[str, Callable[[], Engine]] = {}


def register_engine(name: str, factory: Callable[[], Engine]) -> None:
    """Make an engine available to ``EmulatorConfig(engine=name)`` and ``--engine name``."""
    _ENGINES[name] = factory


def get_engine(name: str) -> Engine:
    """A new engine by name; ``auto`` resolves as :func:`resolve_engine_name` says."""
    try:
        factory = _ENGINES[resolve_engine_name(name)]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; available: {available_engines()}") from None
    return factory()


def available_engines() -> list[str]:
    return sorted([*_ENGINES, AUTO])


def not_audio_message(path: Path) -> str:
    return f"File does not appear to contain audio. File type is {sniff_type(path)}."


# Deterministic filler vocabulary for files that carry no script.
_VOCAB = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "that",
    "it",
    "is",
    "was",
    "for",
    "on",
    "with",
    "as",
    "we",
    "this",
    "they",
    "be",
    "at",
    "by",
    "from",
    "have",
    "not",
    "but",
    "what",
    "all",
    "were",
    "when",
    "can",
    "there",
    "which",
    "their",
    "said",
    "if",
    "do",
    "will",
    "each",
    "about",
    "how",
    "up",
    "out",
    "them",
    "then",
    "she",
    "many",
    "some",
    "so",
    "these",
    "would",
    "other",
    "into",
    "has",
    "more",
    "her",
    "two",
    "like",
    "him",
    "see",
    "time",
    "could",
    "no",
    "make",
    "than",
    "first",
    "been",
    "its",
    "who",
    "now",
    "people",
    "my",
    "made",
    "over",
    "did",
    "down",
    "only",
    "way",
    "find",
    "use",
    "may",
    "water",
    "long",
    "little",
    "very",
    "after",
    "words",
    "called",
    "just",
    "where",
    "most",
    "know",
    "get",
    "through",
    "back",
    "much",
    "before",
    "go",
    "good",
    "new",
    "write",
    "our",
    "used",
    "me",
    "man",
    "too",
    "any",
    "day",
    "same",
    "right",
    "look",
    "think",
    "also",
    "around",
    "another",
    "came",
    "come",
    "work",
    "three",
    "word",
    "must",
    "because",
    "does",
    "part",
    "even",
    "place",
    "well",
    "such",
    "here",
    "take",
    "why",
    "things",
    "help",
    "put",
    "years",
    "different",
    "away",
    "again",
    "off",
    "went",
    "old",
    "number",
    "great",
    "tell",
    "men",
    "say",
    "small",
    "every",
    "found",
    "still",
    "between",
    "name",
    "should",
    "home",
    "big",
    "give",
    "air",
    "line",
    "set",
    "own",
    "under",
    "read",
    "last",
    "never",
    "us",
    "left",
    "end",
    "along",
    "while",
    "might",
    "next",
    "sound",
    "below",
    "saw",
    "something",
    "thought",
    "both",
    "few",
    "those",
    "always",
    "looked",
    "show",
    "large",
    "often",
    "together",
    "asked",
    "house",
    "world",
    "going",
    "want",
    "school",
    "important",
    "until",
    "form",
    "food",
    "keep",
    "children",
    "feet",
    "land",
    "side",
    "without",
    "boy",
    "once",
    "animals",
    "life",
    "enough",
    "took",
    "sometimes",
    "four",
    "head",
    "above",
    "kind",
    "began",
    "almost",
    "live",
    "page",
    "got",
    "earth",
    "need",
    "far",
    "hand",
    "high",
    "year",
    "mother",
    "light",
    "parts",
    "country",
    "father",
]


class ScriptedEngine:
    """Deterministic engine.

    The transcript comes from, in order: a ``vxtx`` RIFF chunk, a sidecar text file next to the
    media (``<file>.txt`` or ``<stem>.txt``), else filler words seeded by the file's hash at
    ~2.5 words/s. Timings are spread across the real duration read from the header.
    """

    name = "scripted"

    def transcribe(self, path: Path, params: dict[str, Any]) -> EngineResult:
        info = probe(path)
        if info is None:
            raise EngineError(not_audio_message(path))
        if info.duration_s < MIN_DURATION_S:
            raise EngineError("Audio duration is too short.")
        seed = _file_seed(path)
        text = read_riff_text(path)
        if text is None:
            text = _sidecar_text(path)
        tokens = text.split() if text is not None else _filler(seed, info.duration_s)
        duration_ms = int(info.duration_s * 1000)
        words = _timed_words(tokens, duration_ms, seed, params, info.channels)
        start_from, end_at = params.get("audio_start_from"), params.get("audio_end_at")
        if start_from is not None or end_at is not None:
            lo, hi = start_from or 0, end_at if end_at is not None else duration_ms
            words = [w for w in words if w.start >= lo and w.end <= hi]
        models = params.get("speech_models") or []
        model = models[0] if models else params.get("speech_model") or DEFAULT_SPEECH_MODEL
        detected = bool(params.get("language_detection"))
        return EngineResult(
            words=words,
            audio_duration=info.duration_s,
            language_code=params.get("language_code") or "en_us",
            speech_model_used=model,
            audio_channels=info.channels,
            language_confidence=0.9876 if detected else None,
        )


def _file_seed(path: Path) -> int:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        # The head and the size are enough to tell files apart without reading gigabytes.
        h.update(fh.read(1 << 20))
    h.update(str(path.stat().st_size).encode())
    return int.from_bytes(h.digest()[:8], "big")


def _sidecar_text(path: Path) -> str | None:
    for candidate in (path.with_name(path.name + ".txt"), path.with_suffix(".txt")):
        if candidate != path and candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    return None


def _mix(seed: int, i: int) -> int:
    # splitmix64: cheap, deterministic, well spread.
    z = (seed + 0x9E3779B97F4A7C15 * (i + 1)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def _filler(seed: int, duration_s: float) -> list[str]:
    n = max(1, round(duration_s * 2.5))
    out: list[str] = []
    sentence_len = 0
    target = 6 + _mix(seed, -1) % 9
    for i in range(n):
        word = _VOCAB[_mix(seed, i) % len(_VOCAB)]
        if sentence_len == 0:
            word = word.capitalize()
        sentence_len += 1
        if sentence_len >= target or i == n - 1:
            word += "." if _mix(seed, i + n) % 5 else "?"
            sentence_len = 0
            target = 6 + _mix(seed, i + 2 * n) % 9
        out.append(word)
    return out


def _ends_sentence(token: str) -> bool:
    return token.rstrip("\"')]").endswith((".", "?", "!"))


def _timed_words(
    tokens: list[str], duration_ms: int, seed: int, params: dict[str, Any], channels: int
) -> list[EngineWord]:
    if not tokens:
        return []
    n = len(tokens)
    slot = duration_ms / n
    speakers = 2
    if isinstance(params.get("speakers_expected"), int) and params["speakers_expected"] > 0:
        speakers = min(params["speakers_expected"], 26)
    label = bool(params.get("speaker_labels"))
    multichannel = bool(params.get("multichannel"))
    words: list[EngineWord] = []
    sentence = 0
    for i, tok in enumerate(tokens):
        r = _mix(seed, i)
        start = int(i * slot + (r % 1000) / 1000 * slot * 0.1)
        end = max(start + 1, int(start + slot * (0.55 + (r >> 10) % 300 / 1000)))
        end = min(end, duration_ms)
        start = min(start, max(0, end - 1))
        confidence = round(0.55 + ((r >> 20) % 4450) / 10000, 4)  # [0.55, 0.9949]
        speaker = chr(ord("A") + sentence % speakers) if label else None
        channel = str(1 + sentence % max(1, channels)) if multichannel else None
        if multichannel and not label:
            speaker = chr(ord("A") + int(channel or "1") - 1)
        words.append(EngineWord(tok, start, end, confidence, speaker, channel))
        if _ends_sentence(tok):
            sentence += 1
    return words


register_engine("scripted", ScriptedEngine)


# -- engine selection ------------------------------------------------------------------------

#: ``EmulatorConfig(engine=AUTO)`` (the default) picks ``sphinx`` when it can run, else
#: ``scripted``.
AUTO = "auto"


def _sphinx() -> Engine:
    from voxlake.emulator.sphinx import SphinxEngine

    return SphinxEngine()


register_engine("sphinx", _sphinx)


def resolve_engine_name(name: str) -> str:
    """``auto`` -> ``sphinx`` if pocketsphinx and PyAV are importable, else ``scripted``."""
    if name != AUTO:
        return name
    from voxlake.emulator.sphinx import available

    return "sphinx" if available() else "scripted"
