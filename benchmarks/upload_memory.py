"""Upload memory benchmark: the client streams a big file in constant memory.

Runs the local server as a subprocess (``harness.local_server``, so only the *client* is in
this process) and measures one upload of a sparse WAV of the requested size with the suite's
``tests/support/memory.py`` (the same measurement ``tests/e2e/test_client_upload_memory.py``
bounds), then prints JSON::

    uv run python benchmarks/upload_memory.py --size-mib 2048

Peak growth over the baseline (taken after a warm-up upload) is the figure that matters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import ServerSpec, local_server
from tests.support.memory import MIB, measure_upload, write_sparse_wav


def run(size_bytes: int, workdir: Path | None = None) -> dict[str, Any]:
    """Measure one upload of ``size_bytes``; returns the JSON-able report."""
    key = "bench-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        media = write_sparse_wav(root / "big.wav", size_bytes)
        warmup = write_sparse_wav(root / "warmup.wav", 4 * MIB)
        (root / "uploads").mkdir()
        with local_server(root / "server", ServerSpec(5, 0.05, 0.0), key) as (_, base_url):
            result = asyncio.run(measure_upload(base_url, key, media, warmup))
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
