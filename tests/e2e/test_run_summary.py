"""What `voxlake run` says after a run and a rerun; a run with nothing to do writes nothing.

The real CLI process against the session's local AssemblyAI-compatible server (scripted
engine), reporting to the session's Prefect API. The server's own request counts are the truth
the printed "AssemblyAI requests" must match.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.parquet as pq
import pytest

from tests.support.clikit import REPO, clean_env, voxlake_run
from tests.support.secrets import KEY_A
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import write_synth_wav

pytestmark = pytest.mark.slow


def requests_made(server: LocalServer) -> int:
    return sum(server.stats()["requests_by_route"].values())


def submissions(server: LocalServer) -> int:
    return sum(server.stats()["submissions_by_key"].values())


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def summary_artifact(prefect_url: str, run_id: str) -> str:
    key = "voxlake-run-summary"
    body = {"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": [key]}}}
    found = httpx.post(f"{prefect_url}/artifacts/filter", json=body, timeout=60).json()
    assert found, f"no run summary artifact for flow run {run_id}"
    return str(found[0]["data"])


@pytest.fixture
def env(local_server: LocalServer, prefect_harness: None) -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL

    return clean_env(
        ASSEMBLYAI_BASE_URL=local_server.base_url,
        ASSEMBLYAI_API_KEY=KEY_A,
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        VOXLAKE_POLL_FIRST_S="0.2",
    )


def test_a_rerun_says_what_it_did_and_a_run_with_nothing_to_do_writes_nothing(
    tmp_path: Path, local_server: LocalServer, env: dict[str, str]
) -> None:
    media = tmp_path / "media"
    media.mkdir()
    write_synth_wav(media / "a.wav", "the birch canoe slid on the smooth planks", 2.0,
                    sample_rate=8000, seed=1)  # fmt: skip
    write_synth_wav(media / "b.wav", "glue the sheet to the dark blue background", 2.0,
                    sample_rate=8000, seed=2)  # fmt: skip
    write_synth_wav(media / "silence.wav", "", 1.0, sample_rate=8000, seed=3)  # no words
    write_synth_wav(media / "short.wav", "hi", 0.1, sample_rate=8000, seed=4)  # the job fails
    manifest = tmp_path / "manifest.csv"
    names = ("a", "b", "silence", "short")
    manifest.write_text("source,media_id\n" + "".join(f"media/{m}.wav,{m}\n" for m in names))
    out = tmp_path / "out"
    args = [str(manifest), "--output", str(out)]
    before = requests_made(local_server)

    first = voxlake_run(args, env, report=True)

    assert first.returncode == 0, first.stdout + first.stderr
    made = requests_made(local_server) - before
    lines = first.stdout.splitlines()
    assert lines[0].startswith("3/4 completed, 1 failed, "), first.stdout
    assert f", {made} AssemblyAI requests, " in lines[0], first.stdout
    mean = duckdb.sql(
        f"select avg(confidence) from read_parquet('{out}/transcripts/**/*.parquet') "
        "where word_count > 0"
    ).fetchall()[0][0]
    assert f"mean confidence {mean:.3f} over 2 items with words (1 had none)" in lines[0]
    assert lines[1] == (
        "4 items in the manifest: 4 new, 0 retried, 0 resumed, 0 skipped as already done, "
        "0 skipped as failed before, 0 deferred by the budget"
    ), first.stdout
    assert "{'" not in first.stdout  # no dict repr
    assert tables_line(first.stdout, out) == tables_on_disk(out), first.stdout
    retry = retry_command(first.stdout, ["short"])
    (run_id,) = (p.stem for p in (out / "reports").glob("*.html"))

    # The same command again: nothing to do, so no request and not one new file.
    files = files_under(out)
    before = requests_made(local_server)
    second = voxlake_run(args, env, report=True)
    assert second.returncode == 0, second.stdout + second.stderr
    assert requests_made(local_server) == before
    assert files_under(out) == files
    lines = second.stdout.splitlines()
    assert lines[0].startswith("Nothing to do: 0 AssemblyAI requests, nothing written, "), lines
    assert lines[1] == (
        "4 items in the manifest: 0 new, 0 retried, 0 resumed, 3 skipped as already done, "
        "1 skipped as failed before, 0 deferred by the budget"
    ), second.stdout
    assert retry_command(second.stdout, ["short"]) == retry

    # The command it printed runs as printed, and submits the failed item again.
    assert retry.endswith(" " + shlex.join([*args, "--no-progress", "--retry-failed"])), retry
    submitted = submissions(local_server)
    third = subprocess.run(
        retry, shell=True, env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert third.returncode == 0, third.stdout + third.stderr
    assert submissions(local_server) == submitted + 1
    assert third.stdout.splitlines()[0].startswith("0/1 completed, 1 failed, "), third.stdout
    assert "0 new, 1 retried, 0 resumed, 3 skipped as already done" in third.stdout

    # The Prefect artifact says the same, in a table.
    artifact = summary_artifact(env["PREFECT_API_URL"], run_id)
    assert f"| AssemblyAI requests | {made} |" in artifact, artifact
    assert "| mean confidence (2 items with words; 1 had none) |" in artifact, artifact
    assert "retry_failed" in artifact and "--retry-failed" in artifact, artifact


def tables_on_disk(root: Path) -> tuple[dict[str, int], int]:
    """Each table the run gave rows to, with its file count; and how many it left empty (their
    one file holds just the schema)."""
    with_rows, empty = {}, 0
    for table in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
        parts = sorted(table.rglob("*.parquet"))
        if not parts:
            continue
        if sum(pq.ParquetFile(f).metadata.num_rows for f in parts):
            with_rows[table.name] = len(parts)
        else:
            empty += 1
    return with_rows, empty


def tables_line(stdout: str, root: Path) -> tuple[dict[str, int], int]:
    """The summary's "Tables written" line, read back: the tables it lists with their file
    counts, and the number of empty tables it says in one phrase."""
    pattern = rf"^Tables written under {re.escape(str(root))}: (.+) \(\+(\d+) empty\)$"
    found = re.search(pattern, stdout, re.M)
    assert found, stdout
    listed = dict(re.fullmatch(r"(\d+) (\w+) files?", part).groups()[::-1]  # type: ignore[union-attr]
                  for part in found.group(1).split(", "))  # fmt: skip
    return {table: int(n) for table, n in listed.items()}, int(found.group(2))


def retry_command(stdout: str, media_ids: list[str]) -> str:
    """The command the summary gives to submit again the items whose job failed."""
    pattern = r"^(\d+) items? whose AssemblyAI job failed.*?\((.*?)\).*\n  (.+)$"
    found = re.search(pattern, stdout, re.M)
    assert found, stdout
    assert int(found.group(1)) == len(media_ids) and found.group(2) == ", ".join(media_ids)
    return found.group(3)
