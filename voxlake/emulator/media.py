"""Looking inside media files: duration, channels, embedded transcript, and a crude type sniff."""

from __future__ import annotations

import contextlib
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

from voxlake.emulator.synth import TRANSCRIPT_CHUNK_ID


@dataclass(frozen=True)
class MediaInfo:
    duration_s: float
    channels: int


def read_riff_text(path: Path) -> str | None:
    """The UTF-8 payload of a ``vxtx`` RIFF chunk, if the file is a RIFF/WAVE holding one."""
    with path.open("rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            hdr = fh.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == TRANSCRIPT_CHUNK_ID:
                return fh.read(size).decode("utf-8", errors="replace")
            if cid == b"data":  # the transcript chunk, when present, precedes the samples
                return None
            fh.seek(size + (size & 1), 1)


def probe(path: Path) -> MediaInfo | None:
    """Duration and channels from the container header, or None when it is not audio we know."""
    with (
        contextlib.suppress(wave.Error, EOFError, OSError, struct.error),
        wave.open(str(path), "rb") as w,
    ):
        rate = w.getframerate()
        if rate > 0:
            return MediaInfo(w.getnframes() / rate, w.getnchannels())
    try:
        import mutagen

        mf = mutagen.File(str(path))
    except Exception:  # mutagen raises many types on garbage input; all mean "not audio"
        return None
    if mf is None or getattr(mf, "info", None) is None:
        return None
    length = float(getattr(mf.info, "length", 0.0) or 0.0)
    channels = int(getattr(mf.info, "channels", 1) or 1)
    return MediaInfo(length, channels)


def sniff_type(path: Path) -> str:
    """A libmagic-like description used in the "does not appear to contain audio" error."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not head:
        return "application/x-empty (empty)"
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered[:512]:
        return "text/html (HTML document, ASCII text)"
    if head.startswith(b"%PDF"):
        return "application/pdf (PDF document)"
    if lowered.startswith((b"{", b"[")):
        with contextlib.suppress(UnicodeDecodeError):
            head.decode("utf-8")
            return "application/json (JSON text data)"
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            return "application/octet-stream (data)"
        return "text/plain (Unicode text, UTF-8 text)"
    if all(c.isprintable() or c in "\r\n\t\f" for c in text):
        return "text/plain (ASCII text)"
    return "application/octet-stream (data)"
