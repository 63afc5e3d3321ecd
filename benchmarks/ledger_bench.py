"""The ledger's benchmarks: B6 (10,000 done + 100 new) and the lookup of 100,000 items.

Called by ``bench.py b6`` / ``bench.py ledger100k``; the child process that measures one lookup
is ``python benchmarks/ledger_bench.py _lookup MEDIA OUTPUT``. Method: README.md ("B6 and the
ledger lookup").

The state "10,000 items already done" is not made by transcribing 10,000 files: the media are
0.1-s WAVs (the lookup only stats them), resolved with :func:`voxlake.manifest.read_manifest`
exactly as ``voxlake run`` resolves them (same folder, same default options, so the ledger keys
match), and their history is written with the ledger's own API: per batch of items, one append
of ``submitting`` (with an upload URL), one of ``submitted`` (with a transcript id), one of
``completed``, as a run records them.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
import uuid
import wave
from pathlib import Path
from typing import Any

MIB = 2**20
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


# --- building the state -----------------------------------------------------------------------


def tiny_wav_bytes(duration_s: float = 0.1, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(duration_s * rate))
    return buf.getvalue()


def write_tiny_media(folder: Path, n: int, prefix: str = "done") -> float:
    """``n`` 0.1-s WAVs ``<prefix>-000000.wav`` ...; returns the seconds it took."""
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    data = tiny_wav_bytes()
    for i in range(n):
        (folder / f"{prefix}-{i:06d}.wav").write_bytes(data)
    return time.perf_counter() - t0


def write_history(
    media: Path, output: Path, *, batch: int, run_id: str = "bench-earlier-run"
) -> dict[str, Any]:
    """Every item of the folder ``media`` completed, per the ledger's own API.

    Items are taken in batches of ``batch``; each batch is three appends (``submitting`` with
    an upload URL, ``submitted`` with a transcript id, ``completed``), so
    ``3 x ceil(n / batch)`` event files of ``batch`` events each.
    """
    from voxlake.lake.ledger import Event, Ledger, Status
    from voxlake.manifest import read_manifest

    t0 = time.perf_counter()
    items = read_manifest(str(media)).items
    t_resolve = time.perf_counter() - t0
    t0 = time.perf_counter()
    with Ledger.open(str(output), run_id=run_id) as ledger:
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            urls = [f"https://cdn.assemblyai.com/upload/{uuid.uuid4()}" for _ in chunk]
            tids = [str(uuid.uuid4()) for _ in chunk]
            ledger.append(
                [Event(i, Status.submitting, audio_url=u) for i, u in zip(chunk, urls, strict=True)]
            )
            ledger.append(
                [
                    Event(i, Status.submitted, audio_url=u, transcript_id=t)
                    for i, u, t in zip(chunk, urls, tids, strict=True)
                ]
            )
            ledger.append(
                [
                    Event(i, Status.completed, transcript_id=t, audio_duration_s=0.1)
                    for i, t in zip(chunk, tids, strict=True)
                ]
            )
    events = output / "_ledger" / "events"
    files = sorted(events.glob("*.parquet"))
    return {
        "items": len(items),
        "events": 3 * len(items),
        "event_files": len(files),
        "events_per_file": batch,
        "event_bytes": sum(f.stat().st_size for f in files),
        "resolve_s": round(t_resolve, 2),
        "write_s": round(time.perf_counter() - t0, 2),
    }


def compact(src: Path, dst: Path) -> dict[str, Any]:
    """A copy of the output root ``src`` at ``dst`` whose event files are merged into one.

    Through the ledger's own path: a non-read-only :meth:`Ledger.open` with ``compact_above=0``
    (what a run does at start when there are more than 64 files), timed.
    """
    from voxlake.lake.ledger import Ledger

    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    t0 = time.perf_counter()
    Ledger.open(str(dst), run_id="bench-compaction", compact_above=0).close()
    seconds = time.perf_counter() - t0
    files = sorted((dst / "_ledger" / "events").glob("*.parquet"))
    return {
        "compaction_s": round(seconds, 2),
        "event_files": len(files),
        "event_bytes": sum(f.stat().st_size for f in files),
    }


# --- the lookup, measured in a fresh process --------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def lookup_child(media: str, output: str) -> None:
    """One run's "what is already done": resolve the folder, then the ledger open + plan.

    Prints one JSON line. Times: resolve (``read_manifest``: one stat per file), ledger open
    (list + read every event file, fold into states: ``Ledger.open(read_only=True)``) and
    :func:`voxlake.lake.ledger.plan`. Peak RSS: the whole process's ``VmHWM``; it is reset after
    the imports and again after the resolve, so each phase's peak is its own (the items stay in
    memory during the lookup, as in a run). ``ru_maxrss`` is the process's lifetime peak.
    """
    from collections import Counter

    import fsspec
    import pyarrow as pa

    from voxlake.lake.ledger import Ledger, plan
    from voxlake.manifest import read_manifest

    # Imported by any `voxlake run` process long before it opens the ledger (Prefect imports
    # fsspec; pyarrow imports pandas on its first conversion): not the lookup's cost.
    pa.array([0])
    fsspec.filesystem("file")
    out: dict[str, Any] = {"rss_after_imports_mib": round(_status_kib("VmRSS") / 1024, 1)}
    out["peak_reset"] = _reset_peak()
    t0 = time.perf_counter()
    items = read_manifest(media).items
    out["resolve_s"] = round(time.perf_counter() - t0, 3)
    out["resolve_peak_rss_mib"] = round(_status_kib("VmHWM") / 1024, 1)
    out["rss_before_lookup_mib"] = round(_status_kib("VmRSS") / 1024, 1)
    _reset_peak()
    t0 = time.perf_counter()
    ledger = Ledger.open(output, run_id="bench-lookup", read_only=True)
    t1 = time.perf_counter()
    planned = plan(items, ledger.states)
    t2 = time.perf_counter()
    out |= {
        "items": len(items),
        "states": len(ledger.states),
        "actions": dict(Counter(p.action for p in planned)),
        "open_s": round(t1 - t0, 3),
        "plan_s": round(t2 - t1, 3),
        "lookup_s": round(t2 - t0, 3),
        "lookup_peak_rss_mib": round(_status_kib("VmHWM") / 1024, 1),
        "lifetime_peak_rss_mib": round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        ),
    }
    out["lookup_rss_growth_mib"] = round(
        out["lookup_peak_rss_mib"] - out["rss_before_lookup_mib"], 1
    )
    print(json.dumps(out))


def measure_lookup(media: Path, output: Path, repeats: int = 3) -> dict[str, Any]:
    """:func:`lookup_child` ``repeats`` times, each in a fresh process (clean peaks)."""
    runs = []
    for _ in range(repeats):
        cmd = [sys.executable, str(Path(__file__)), "_lookup", str(media), str(output)]
        # The allocator `voxlake run` has: voxlake.cli.main chooses it for its process.
        env = {"ARROW_DEFAULT_MEMORY_POOL": "system"} | dict(os.environ)
        done = subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"lookup child failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    worst = {k: max(r[k] for r in runs) for k in ("lookup_s", "lookup_peak_rss_mib", "resolve_s")}
    median = {
        k: round(statistics.median(r[k] for r in runs), 3)
        for k in ("lookup_s", "open_s", "plan_s", "lookup_peak_rss_mib", "resolve_s")
    }
    return {"runs": runs, "worst": worst, "median": median, "loadavg": list(os.getloadavg())}


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_lookup":
        lookup_child(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"usage: {sys.argv[0]} _lookup MEDIA OUTPUT (run by bench.py)")
