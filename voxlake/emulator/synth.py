"""Deterministic synthetic WAV files for tests and demos.

The files are valid mono 16-bit PCM WAVs holding quiet noise plus a soft tone. When a transcript
is given it is embedded in a custom RIFF chunk ``vxtx`` (UTF-8) that the scripted engine reads
back, so a test can choose exactly what the "speech" says. Large files are written chunk by
chunk: ``write_synth_wav`` never holds more than one chunk of samples in memory.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator
from pathlib import Path

TRANSCRIPT_CHUNK_ID = b"vxtx"
_CHUNK_SECONDS = 1.0
_DISTINCT_BLOCKS = 5


def _header(n_samples: int, sample_rate: int, text_chunk: bytes) -> bytes:
    data_size = n_samples * 2
    riff_size = 4 + (8 + 16) + len(text_chunk) + (8 + data_size)
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + text_chunk
        + b"data"
        + struct.pack("<I", data_size)
    )


def _text_chunk(text: str | None) -> bytes:
    if text is None:
        return b""
    payload = text.encode("utf-8")
    pad = b"\x00" if len(payload) % 2 else b""  # RIFF chunks are word aligned
    return TRANSCRIPT_CHUNK_ID + struct.pack("<I", len(payload)) + payload + pad


def _sample_blocks(n_samples: int, sample_rate: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    freq = 180.0 + (seed % 7) * 40.0
    block = max(1, int(sample_rate * _CHUNK_SECONDS))
    # A handful of precomputed 1 s blocks, cycled: generation runs at memcpy speed, so even
    # multi-GiB files are quick, while the audio still is not a single repeated second.
    blocks = []
    for b in range(_DISTINCT_BLOCKS):
        samples = [
            int(600 * math.sin(2 * math.pi * freq * (i + b * block) / sample_rate))
            + rng.randint(-200, 200)
            for i in range(block)
        ]
        blocks.append(struct.pack(f"<{block}h", *samples))
    done = 0
    k = 0
    while done < n_samples:
        n = min(block, n_samples - done)
        data = blocks[k % _DISTINCT_BLOCKS]
        yield data if n == block else data[: n * 2]
        k += 1
        done += n


def iter_synth_wav(
    text: str | None, duration_s: float, sample_rate: int = 16000, seed: int = 0
) -> Iterator[bytes]:
    """Yield the WAV file as byte chunks (header first), ~1 s of audio per chunk."""
    if duration_s < 0:
        raise ValueError("duration_s must be >= 0")
    n_samples = round(duration_s * sample_rate)
    if n_samples * 2 > 0xFFFFFFFF - 1024:
        raise ValueError("WAV data above 4 GiB cannot be represented")
    yield _header(n_samples, sample_rate, _text_chunk(text))
    yield from _sample_blocks(n_samples, sample_rate, seed)


def synth_wav(
    text: str | None, duration_s: float, sample_rate: int = 16000, seed: int = 0
) -> bytes:
    """The whole WAV in memory; use ``write_synth_wav`` for large files."""
    return b"".join(iter_synth_wav(text, duration_s, sample_rate, seed))


def write_synth_wav(
    path: str | Path,
    text: str | None,
    duration_s: float,
    sample_rate: int = 16000,
    seed: int = 0,
) -> Path:
    """Stream a synthetic WAV to ``path`` chunk by chunk (fine for 1 GiB+ files)."""
    out = Path(path)
    with out.open("wb") as fh:
        for chunk in iter_synth_wav(text, duration_s, sample_rate, seed):
            fh.write(chunk)
    return out


def write_large_wav(path: str | Path, size_bytes: int, sample_rate: int = 16000) -> Path:
    """A WAV of roughly ``size_bytes`` (for upload-size tests), written in chunks."""
    duration = max(0.0, (size_bytes - 44) / (2 * sample_rate))
    return write_synth_wav(path, None, duration, sample_rate)
