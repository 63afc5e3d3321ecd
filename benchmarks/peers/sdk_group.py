"""Peer 2: AssemblyAI's official Python SDK, ``transcribe_group`` with default settings.

``--mode sync``: ``aai.Transcriber().transcribe_group(paths)`` (uploads and submits on 8 threads,
then one polling thread per transcript, every ``polling_interval`` = 3 s). ``--mode async``:
``aai.AsyncTranscriber().transcribe_group(paths)`` (an asyncio semaphore of 8 around each
file's upload, submit and poll). Only ``base_url``, ``api_key`` and ``speech_models`` are set;
``return_failures=True`` makes the SDK hand back the failures it would otherwise drop silently,
so they can be counted. Writes a JSON result to ``--out``::

    python benchmarks/peers/sdk_group.py MANIFEST.csv --mode sync --out result.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import csv
import json
import os
import re
import time
import traceback
from pathlib import Path
from typing import Any

import assemblyai as aai


def _outcome(transcripts: list[Any], failures: list[Any]) -> dict[str, Any]:
    statuses = collections.Counter(str(t.status.value) for t in transcripts)
    reasons = collections.Counter(
        type(f).__name__ + ": " + re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", str(f))[:100]
        for f in failures
    )
    return {
        "returned": statuses.get("completed", 0),
        "returned_by_status": dict(statuses),
        "failures": len(failures),
        "failure_reasons": dict(reasons.most_common(5)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--mode", choices=("sync", "async"), default="sync")
    parser.add_argument("--files", type=int, default=None, help="the first N files only")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with args.manifest.open() as fh:
        paths = [str(args.manifest.parent / row["source"]) for row in csv.DictReader(fh)]
    paths = paths[: args.files] if args.files else paths

    aai.settings.base_url = os.environ["ASSEMBLYAI_BASE_URL"]
    aai.settings.api_key = os.environ["ASSEMBLYAI_API_KEY"]
    config = aai.TranscriptionConfig(speech_models=["universal-2"])
    out: dict[str, Any] = {"files": len(paths), "mode": args.mode, "sdk": aai.__version__}
    started = time.perf_counter()
    try:
        if args.mode == "sync":
            group, failures = aai.Transcriber(config=config).transcribe_group(
                paths, return_failures=True
            )
            transcripts = list(group)
        else:
            transcripts, failures = asyncio.run(
                aai.AsyncTranscriber(config=config).transcribe_group(paths, return_failures=True)
            )
        out |= _outcome(transcripts, failures)
    except Exception as exc:  # the SDK raised out of transcribe_group: nothing was returned
        out |= {"returned": 0, "raised": f"{type(exc).__name__}: {exc}"[:300]}
        out["traceback"] = traceback.format_exc()[-2000:]
    out["elapsed_s"] = round(time.perf_counter() - started, 3)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    os._exit(0)  # do not wait for the SDK's idle polling executors


if __name__ == "__main__":
    main()
