"""Peer 1: the seed guide's approach, written plainly with httpx.

The guide (``shared/seeds/004_…``): upload the file, POST /v2/transcript with the upload_url,
then poll GET /v2/transcript/{id} every few seconds (3 s here) until it is completed or error;
one file after another. Reads ``ASSEMBLYAI_BASE_URL`` / ``ASSEMBLYAI_API_KEY``; writes a JSON
result (files returned, failures, elapsed) to ``--out``::

    python benchmarks/peers/seed_guide.py MANIFEST.csv --files 20 --out result.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import httpx

POLL_INTERVAL_S = 3.0


def transcribe(http: httpx.Client, path: Path) -> dict:
    with path.open("rb") as f:
        upload = http.post("/v2/upload", content=f.read())
    upload.raise_for_status()
    payload = {"audio_url": upload.json()["upload_url"], "speech_models": ["universal-2"]}
    response = http.post("/v2/transcript", json=payload)
    response.raise_for_status()
    transcript_id = response.json()["id"]
    while True:
        result = http.get(f"/v2/transcript/{transcript_id}").raise_for_status().json()
        if result["status"] in ("completed", "error"):
            return result
        time.sleep(POLL_INTERVAL_S)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--files", type=int, default=None, help="the first N files only")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    with args.manifest.open() as fh:
        paths = [args.manifest.parent / row["source"] for row in csv.DictReader(fh)]
    paths = paths[: args.files] if args.files else paths
    headers = {"authorization": os.environ["ASSEMBLYAI_API_KEY"]}
    started = time.perf_counter()
    returned, errors = 0, []
    with httpx.Client(base_url=os.environ["ASSEMBLYAI_BASE_URL"], headers=headers) as http:
        for path in paths:
            try:
                result = transcribe(http, path)
            except httpx.HTTPError as exc:
                errors.append(f"{path.name}: {exc}")
                continue
            if result["status"] == "completed":
                returned += 1
            else:
                errors.append(f"{path.name}: {result.get('error')}")
    out = {
        "files": len(paths),
        "returned": returned,
        "errors": errors[:20],
        "error_count": len(errors),
        "elapsed_s": round(time.perf_counter() - started, 3),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
