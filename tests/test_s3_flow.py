"""End to end on S3: the Prefect flow reads media and manifests from moto's S3 server, writes
the tables to it, and the local AssemblyAI-compatible server transcribes (uploaded or presigned).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.dataset as ds
import pytest

from tests.flowkit import SENTENCES, run_flow
from tests.memory import MIB, wav_header
from tests.s3_fixtures import FaultRule, MotoS3, S3FaultProxy
from voxlake.checks import check_invariants
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.read import read_table
from voxlake.storage import S3Options

pytestmark = pytest.mark.usefixtures("prefect_harness")


def put_clips(fs: Any, tmp_path: Path, bucket: str, keys: list[str]) -> dict[str, str]:
    """A spoken synthetic WAV per key; returns key -> the sentence it says."""
    said = {}
    for i, key in enumerate(keys):
        text = SENTENCES[i % len(SENTENCES)]
        local = tmp_path / f"clip-{i}.wav"
        write_synth_wav(local, text, 1.0 + 0.1 * i, sample_rate=8000, seed=i)
        fs.put_file(str(local), f"{bucket}/{key}")
        said[key] = text
    return said


def all_text(fs: Any, prefix: str) -> str:
    """Every byte under an S3 prefix, decoded loosely: for leak checks."""
    return "".join(fs.cat_file(k).decode("latin-1") for k in fs.find(prefix))


def test_s3_manifest_media_and_output_end_to_end(
    tmp_path: Path,
    s3fs_fs: Any,
    make_bucket: Callable[[str], str],
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
) -> None:
    server = make_server(concurrency_limit=4)
    api(server)
    media, lake = make_bucket("media"), make_bucket("lake")
    keys = ["calls/2026-11-20/with space.wav", "calls/2026-11-20/ünï-Grüße.wav", "calls/a+b.wav"]
    said = put_clips(s3fs_fs, tmp_path, media, keys)
    manifest = (
        "source,media_id\n2026-11-20/with space.wav,\n2026-11-20/ünï-Grüße.wav,\na+b.wav,plus\n"
    )
    s3fs_fs.pipe(f"{media}/calls/nov.csv", manifest.encode())
    out = f"s3://{lake}/voxlake"

    state, summary = run_flow(manifest=f"s3://{media}/calls/nov.csv", output=out)

    assert state.is_completed() and (summary.completed, summary.failed) == (3, 0), summary
    assert summary.output == out
    check_invariants(out)
    rows = {r["media_id"]: r for r in read_table(out, "transcripts").to_pylist()}
    assert set(rows) == {"2026-11-20/with space.wav", "2026-11-20/ünï-Grüße.wav", "plus"}
    assert rows["plus"]["source"] == f"s3://{media}/calls/a+b.wav"
    assert rows["plus"]["text"] == said["calls/a+b.wav"]
    assert rows["plus"]["source_fingerprint"].startswith(f"s3:{rows['plus']['source_size']}:")
    assert server.stats()["requests_by_route"].get("upload") == 3  # streamed from S3

    words = ds.dataset(
        f"{lake}/voxlake/words", filesystem=s3fs_fs, format="parquet", partitioning="hive"
    ).to_table()
    con = duckdb.connect()
    con.register_filesystem(s3fs_fs)
    counts = dict(
        con.sql(
            f"select media_id, count(*) from read_parquet('{out}/words/**/*.parquet', "
            "hive_partitioning=1) group by media_id"
        ).fetchall()
    )
    assert counts == {m: r["word_count"] for m, r in rows.items()}
    assert words.num_rows == sum(counts.values())
    # Only complete Parquet objects, no temp files, under the output prefix; and the run's
    # report beside them (it was never written on S3 before OutputRoot: a path outside the
    # base dir of the filesystem it was given).
    keys = s3fs_fs.find(f"{lake}/voxlake")
    assert all(k.endswith(".parquet") for k in keys if "/reports/" not in k)
    assert [f"s3://{k}" for k in keys if "/reports/" in k] == [summary.report]


def test_presigned_mode_end_to_end_and_signatures_stay_out_of_tables(
    tmp_path: Path,
    s3fs_fs: Any,
    make_bucket: Callable[[str], str],
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
    s3_fault_proxy: S3FaultProxy,
) -> None:
    server = make_server()
    api(server)
    media, lake = make_bucket("media"), make_bucket("lake")
    said = put_clips(s3fs_fs, tmp_path, media, ["in/one.wav", "in/two words.wav", "in/denied.wav"])
    # The service's download of this one is refused: its error quotes the presigned URL.
    s3_fault_proxy.add(
        FaultRule(
            "denied.wav", 403, "AccessDenied", "Access Denied", ("GET",), query_contains="X-Amz"
        )
    )
    out = f"s3://{lake}/out"
    s3 = S3Options(endpoint_url=s3_fault_proxy.endpoint_url, presign=True, presign_expires_s=900)

    _, summary = run_flow(manifest=f"s3://{media}/in/", output=out, s3=s3)

    assert (summary.completed, summary.failed) == (2, 1), summary
    routes = server.stats()["requests_by_route"]
    assert routes.get("upload", 0) == 0  # the service fetched the objects itself
    rows = {r["media_id"]: r for r in read_table(out, "transcripts").to_pylist()}
    assert rows["two words.wav"]["text"] == said["in/two words.wav"]
    error = rows["denied.wav"]["error"]
    assert "Download error" in error and f"/{media}/in/denied.wav" in error
    stored = all_text(s3fs_fs, f"{lake}/out") + json.dumps([f.error for f in summary.failures])
    for marker in ("X-Amz-Signature", "X-Amz-Credential", "Signature=", "X-Amz-Security-Token"):
        assert marker not in stored


def test_s3_errors_are_recorded_per_item_and_throttling_is_retried(
    tmp_path: Path,
    s3fs_fs: Any,
    make_bucket: Callable[[str], str],
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
    s3_fault_proxy: S3FaultProxy,
) -> None:
    api(make_server())
    media = make_bucket("media")
    put_clips(s3fs_fs, tmp_path, media, ["ok.wav", "denied.wav", "slow.wav", "late.wav"])
    s3_fault_proxy.add(FaultRule("denied.wav", 403, "AccessDenied", "Access Denied"))
    slow = s3_fault_proxy.add(
        FaultRule("/slow.wav", 503, "SlowDown", "Please reduce your request rate.", times=3)
    )
    manifest = tmp_path / "list.csv"
    manifest.write_text(
        "source,media_id\n"
        f"s3://{media}/ok.wav,ok\n"
        f"s3://{media}/missing.wav,missing\n"
        "s3://no-such-bucket-vx/a.wav,no-bucket\n"
        f"s3://{media}/denied.wav,denied\n"
        f"s3://{media}/slow.wav,slow\n"
    )
    s3 = S3Options(endpoint_url=s3_fault_proxy.endpoint_url)
    out = tmp_path / "out"

    _, summary = run_flow(manifest=str(manifest), output=str(out), on_invalid="skip", s3=s3)

    assert (summary.completed, summary.failed) == (2, 3), summary
    assert slow.hits == 3  # SlowDown answered three times, retried by botocore
    rows = {r["media_id"]: r for r in read_table(out, "transcripts").to_pylist()}
    assert rows["slow"]["status"] == "completed"
    assert "no such object" in rows["missing"]["error"]
    assert f"s3://{media}/missing.wav" in rows["missing"]["error"]
    assert "bucket s3://no-such-bucket-vx/ does not exist" in rows["no-bucket"]["error"]
    assert "access denied" in rows["denied"]["error"]
    assert "s3:GetObject" in rows["denied"]["error"]


def test_object_deleted_after_validation_fails_at_upload(
    tmp_path: Path,
    s3fs_fs: Any,
    make_bucket: Callable[[str], str],
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
) -> None:
    from voxlake.client import AssemblyAIClient
    from voxlake.flows.transcribe import transcribe_manifest
    from voxlake.manifest import read_manifest
    from voxlake.run.transcription import TranscriptionRun

    api(make_server())
    media = make_bucket("media")
    put_clips(s3fs_fs, tmp_path, media, ["a.wav"])
    manifest = read_manifest(f"s3://{media}/")
    s3fs_fs.rm(f"{media}/a.wav")
    assert transcribe_manifest  # the flow wires the same TranscriptionRun

    async def go() -> Any:
        async with (
            AssemblyAIClient() as client,
            TranscriptionRun(manifest, str(tmp_path / "o"), client=client, flow_run_id="r") as run,
        ):
            await run.upload(run.media_ids)
            return await run.finish()

    import asyncio

    summary = asyncio.run(go())
    assert summary.failed == 1
    assert summary.failures[0].error.startswith(f"upload: reading s3://{media}/a.wav: no such")


def test_cli_runs_s3_manifest_to_s3_output(
    tmp_path: Path,
    s3fs_fs: Any,
    make_bucket: Callable[[str], str],
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
    moto_s3: MotoS3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from voxlake.cli import app

    api(make_server())
    media, lake = make_bucket("media"), make_bucket("lake")
    put_clips(s3fs_fs, tmp_path, media, ["calls/x.wav", "calls/y.mp3.txt"])
    # The endpoint given as a flag, as for MinIO/R2/Ceph (the env var is unset for this run).
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    result = CliRunner().invoke(
        app,
        [
            "run",
            f"s3://{media}/calls/",
            "--output",
            f"s3://{lake}/voxlake",
            "--s3-endpoint-url",
            moto_s3.endpoint_url,
            "--s3-region",
            "us-east-1",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3.endpoint_url)
    rows = read_table(f"s3://{lake}/voxlake", "transcripts").to_pylist()
    assert [(r["media_id"], r["status"]) for r in rows] == [("x.wav", "completed")]


@pytest.mark.slow
def test_2000_objects_fan_out_through_the_flow(
    tmp_path: Path,
    s3fs_fs: Any,
    make_bucket: Callable[[str], str],
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
) -> None:
    server = make_server(concurrency_limit=200, processing_fixed_s=0.0)
    api(server)
    media, lake = make_bucket("media"), make_bucket("lake")
    clip = tmp_path / "clip.wav"
    write_synth_wav(clip, "Rice is often served in round bowls.", 1.0, sample_rate=8000)
    payload = clip.read_bytes()
    keys = [f"day/{i % 10}/call {i:04d}+x.wav" for i in range(2000)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: s3fs_fs.pipe(f"{media}/{k}", payload), keys))
    out = f"s3://{lake}/voxlake"

    _, summary = run_flow(manifest=f"s3://{media}/day/", output=out, max_uploads=32, chunk_size=250)

    assert (summary.total, summary.completed, summary.failed) == (2000, 2000, 0), summary.failures[
        :3
    ]
    t = read_table(out, "transcripts", columns=["media_id", "source_fingerprint"])
    assert t.num_rows == 2000 and len(set(t.column("media_id").to_pylist())) == 2000
    assert server.stats()["requests_by_route"].get("upload") == 2000


_MEMORY_PROBE = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time
    import psutil
    from voxlake.flows.transcribe import transcribe_manifest

    small, big, out = sys.argv[1:4]
    proc = psutil.Process()
    asyncio.run(transcribe_manifest(manifest=small, output=out + "/warm"))  # imports, pools
    baseline = proc.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    threading.Thread(target=sample, daemon=True).start()
    summary = asyncio.run(transcribe_manifest(manifest=big, output=out + "/big"))
    done.set()
    failures = [f.error for f in summary.failures]
    print(json.dumps({"baseline": baseline, "peak": peak[0], "message": summary.message,
                      "completed": summary.completed, "failures": failures}))
    """
)


@pytest.mark.slow
def test_300_mb_object_streams_in_bounded_memory(
    tmp_path: Path,
    s3fs_fs: Any,
    make_bucket: Callable[[str], str],
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
) -> None:
    from prefect.settings import PREFECT_API_URL

    server = make_server(upload_dir=tmp_path / "uploads")
    api(server)
    media, lake = make_bucket("media"), make_bucket("lake")
    put_clips(s3fs_fs, tmp_path, media, ["warm/w.wav"])
    size = 300 * MIB
    with s3fs_fs.open(f"{media}/big/long call.wav", "wb", block_size=16 * MIB) as fh:
        fh.write(wav_header(size))
        chunk = bytes(8 * MIB)
        left = size - 44
        while left:
            fh.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    assert s3fs_fs.info(f"{media}/big/long call.wav")["size"] == size

    script = tmp_path / "probe.py"
    script.write_text(_MEMORY_PROBE)
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    result = subprocess.run(
        [sys.executable, str(script), f"s3://{media}/warm/", f"s3://{media}/big/", f"s3://{lake}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    growth = report["peak"] - report["baseline"]
    print(f"300 MB S3 object streamed: flow process peak RSS growth {growth / MIB:.1f} MiB")
    assert growth < 100 * MIB, report
    stats = server.stats()
    assert stats["requests_by_route"].get("upload") == 2  # the warm-up clip and the big one
    uploaded = sorted(p.stat().st_size for p in (tmp_path / "uploads").rglob("*") if p.is_file())
    assert uploaded and uploaded[-1] == size  # every byte arrived
