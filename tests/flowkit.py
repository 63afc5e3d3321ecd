"""Shared pieces of the end-to-end flow tests: sample speech, manifests, running the flow."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Any

from prefect.states import State

from voxlake.emulator.harvard import H1
from voxlake.emulator.synth import write_synth_wav
from voxlake.flows.transcribe import transcribe_manifest
from voxlake.run.summary import RunSummary

# Harvard sentences, list 1: the same the demo corpus is made from.
SENTENCES = H1


def write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    fields = sorted({k for row in rows for k in row}, key=lambda k: (k != "source", k))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def speech_clips(folder: Path, n: int) -> list[dict[str, Any]]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        write_synth_wav(folder / f"clip-{i:02d}.wav", text, 1.0 + i * 0.2, sample_rate=8000, seed=i)
        rows.append({"source": f"{folder.name}/clip-{i:02d}.wav", "media_id": f"clip-{i:02d}"})
    return rows


def run_flow(**params: Any) -> tuple[State, RunSummary]:
    state = asyncio.run(transcribe_manifest(**params, return_state=True))
    summary = state.result(raise_on_failure=False)
    assert isinstance(summary, RunSummary), state
    return state, summary
