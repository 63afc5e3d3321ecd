"""Upload memory benchmark: the client streams a big file in constant memory.

Runs the local server as a subprocess (``harness.local_server``, so only the *client* is in
this process), writes a sparse WAV of the requested size (a valid header, then zeros: no
disk blocks, no RAM), uploads it with :class:`AssemblyAIClient`, samples this process's RSS
every 5 ms in a thread, and prints JSON::

    uv run python benchmarks/upload_memory.py --size-mib 2048

Peak growth over the baseline (taken after a warm-up upload, so imports and the connection pool
are already paid for) is the figure that matters; it should be a few MiB (1 MiB chunks in
flight) regardless of the file size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.harness import ServerSpec, local_server
from voxlake.client import AssemblyAIClient

MIB = 1024 * 1024
SAMPLE_RATE = 16_000


def write_sparse_wav(path: Path, size_bytes: int) -> Path:
    """A mono 16-bit WAV header followed by zeros (silence), as a sparse file."""
    data_size = size_bytes - 44
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )
    with path.open("wb") as fh:
        fh.write(header)
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


async def _upload(base_url: str, key: str, path: Path, warmup: Path) -> dict[str, Any]:
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


def run(size_bytes: int, workdir: Path | None = None) -> dict[str, Any]:
    """Measure one upload of ``size_bytes``; returns the JSON-able report."""
    key = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        media = write_sparse_wav(root / "big.wav", size_bytes)
        warmup = write_sparse_wav(root / "warmup.wav", 4 * MIB)
        (root / "uploads").mkdir()
        with local_server(root / "server", ServerSpec(5, 0.05, 0.0), key) as (_, base_url):
            result = asyncio.run(_upload(base_url, key, media, warmup))
            # The largest stored upload is ours (the other is the 4 MiB warm-up).
            uploads = root / "server" / "uploads"
            stored = [p.stat().st_size for p in uploads.rglob("*") if p.is_file()]
            uploaded = max(stored, default=0)
    result |= {
        "size_bytes": size_bytes,
        "server_received_bytes": uploaded,
        "peak_growth_mib": round(result["peak_growth_bytes"] / MIB, 2),
        "throughput_mib_s": round(size_bytes / MIB / max(result["seconds"], 1e-9), 1),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--workdir", type=Path, default=None, help="where the temp file goes")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    print(json.dumps(run(args.size_mib * MIB, args.workdir), indent=2))


if __name__ == "__main__":
    main()
