"""Client memory while it streams a big upload: shared by the suite and benchmarks/upload_memory.py.

A sparse WAV (a valid header, then zeros: no disk blocks, no RAM) is uploaded with
:class:`AssemblyAIClient` while a thread samples this process's RSS every 5 ms. The baseline is
taken after a warm-up upload, so imports and the connection pool are already paid for; the peak
growth over it should be a few MiB (1 MiB chunks in flight) whatever the file's size. The server
must run in another process, so that only the client is measured.
"""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from voxlake.client import AssemblyAIClient

MIB = 1024 * 1024


def wav_header(size_bytes: int, sample_rate: int = 16_000) -> bytes:
    """The 44-byte header of a mono 16-bit PCM WAV file of ``size_bytes`` in all."""
    data_size = size_bytes - 44
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


def write_sparse_wav(path: Path, size_bytes: int) -> Path:
    """A WAV of ``size_bytes``: the header, then silence, as a sparse file."""
    with path.open("wb") as fh:
        fh.write(wav_header(size_bytes))
        fh.truncate(size_bytes)  # the rest reads back as zeros without being written
    return path


class RssSampler:
    """Peak RSS of this process, sampled in a background thread."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


async def measure_upload(base_url: str, key: str, path: Path, warmup: Path) -> dict[str, Any]:
    """Upload ``warmup``, then ``path``; the RSS baseline before and the peak during the latter."""
    async with AssemblyAIClient(api_key=key, base_url=base_url) as client:
        await client.upload(warmup)  # pay for imports, TLS-less pool, thread pool first
        baseline = psutil.Process().memory_info().rss
        started = time.perf_counter()
        with RssSampler() as sampler:
            uploaded = await client.upload(path)
        seconds = time.perf_counter() - started
    return {
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": sampler.peak,
        "peak_growth_bytes": sampler.peak - baseline,
        "seconds": round(seconds, 3),
        "upload_url": uploaded.upload_url,
    }
