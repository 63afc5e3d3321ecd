"""S3 sources, manifests, tables and errors against moto's standalone S3 server (no Prefect)."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.support.s3_fixtures import FaultRule, S3FaultProxy
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.read import read_table
from voxlake.lake.root import OutputRoot
from voxlake.lake.tables import TABLES
from voxlake.lake.writer import DatasetWriter, TableSink
from voxlake.manifest import ManifestError, SourceInfo, SourceKind, read_manifest
from voxlake.manifest.resolve import list_media, stat_many
from voxlake.redact import redact_text, redact_url
from voxlake.sources import ObjectInfo, stage_s3
from voxlake.storage import (
    S3AccessDeniedError,
    S3BucketNotFoundError,
    S3NotFoundError,
    S3Options,
    S3ThrottledError,
    StorageError,
    join_s3,
    s3_filesystem,
    storage_error,
)

ODD_KEYS = ["calls/with space.wav", "calls/ünïcødé-Grüße.wav", "calls/a+b=c.wav"]


def wav_bytes(tmp_path: Any, text: str = "Hello there.", seconds: float = 1.0) -> bytes:
    path = tmp_path / f"clip-{abs(hash(text))}.wav"
    write_synth_wav(path, text, seconds, sample_rate=8000)
    return path.read_bytes()


# --- URLs, options, redaction -----------------------------------------------------------------


def test_relative_keys_resolve_against_the_manifest_prefix() -> None:
    base = "s3://b/manifests/"
    assert join_s3(base, "a b+c.wav") == "s3://b/manifests/a b+c.wav"
    assert join_s3(base, "./x/../y.wav") == "s3://b/manifests/y.wav"
    assert join_s3(base, "../media/z.wav") == "s3://b/media/z.wav"
    assert join_s3(base, "/root.wav") == "s3://b/root.wav"
    assert join_s3(base, "../../up.wav") is None


def test_s3_options_never_take_credentials() -> None:
    with pytest.raises(ValueError):
        S3Options.model_validate({"aws_secret_access_key": "x"})
    with pytest.raises(ValueError, match="credentials"):
        S3Options(endpoint_url="http://user:secret@127.0.0.1:9000")
    with pytest.raises(ValueError):
        S3Options(presign_expires_s=8 * 24 * 3600)  # SigV4 URLs live 7 days at most
    assert S3Options(endpoint_url="http://127.0.0.1:9000/").endpoint_url == "http://127.0.0.1:9000"


def test_presigned_urls_lose_their_query_string() -> None:
    v4 = (
        "http://127.0.0.1:9/b/k.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F"
        "&X-Amz-Signature=abc"
    )
    assert redact_url(v4) == "http://127.0.0.1:9/b/k.wav"
    assert redact_url("https://x/k?AWSAccessKeyId=A&Signature=s&Expires=1") == "https://x/k"
    assert redact_url("https://u:p@x/k.wav?page=2") == "https://x/k.wav?page=2"
    assert redact_url("https://x/k.wav?page=2") == "https://x/k.wav?page=2"
    text = f"Download error to {v4}, 403 Client Error: Forbidden for url: {v4}"
    assert redact_text(text) == (
        "Download error to http://127.0.0.1:9/b/k.wav 403 Client Error: Forbidden for url: "
        "http://127.0.0.1:9/b/k.wav"
    )


def test_error_translation_is_terminal_or_transient() -> None:
    url = "s3://b/k.wav"
    assert isinstance(storage_error(FileNotFoundError("k"), url), S3NotFoundError)
    assert isinstance(
        storage_error(FileNotFoundError("The specified bucket does not exist"), url),
        S3BucketNotFoundError,
    )
    denied = storage_error(PermissionError("Access Denied"), url)
    assert isinstance(denied, S3AccessDeniedError) and not denied.transient
    assert url in str(denied) and "s3:GetObject" in str(denied)
    slow = storage_error(OSError("SlowDown: Please reduce your request rate."), url)
    assert isinstance(slow, S3ThrottledError) and slow.transient


# --- listing and manifests ----------------------------------------------------------------------


def test_prefix_manifest_lists_media_with_odd_keys(
    s3fs_fs: Any, make_bucket: Callable[[str], str], tmp_path: Any
) -> None:
    bucket = make_bucket("media")
    audio = wav_bytes(tmp_path)
    for key in [*ODD_KEYS, "calls/deeper/x.mp3", "calls/notes.txt", "calls/.hidden.wav"]:
        s3fs_fs.pipe(f"{bucket}/{key}", audio)
    s3fs_fs.pipe(f"{bucket}/other/y.wav", audio)

    manifest = read_manifest(f"s3://{bucket}/calls/")
    ids = [i.media_id for i in manifest]
    assert ids == sorted(["with space.wav", "ünïcødé-Grüße.wav", "a+b=c.wav", "deeper/x.mp3"])
    assert {i.kind for i in manifest} == {SourceKind.s3}
    assert manifest.items[0].source.startswith(f"s3://{bucket}/calls/")
    # Without the trailing slash it is the same prefix; a glob and an extension filter narrow it.
    assert [i.media_id for i in read_manifest(f"s3://{bucket}/calls")] == ids
    globbed = read_manifest(f"s3://{bucket}/calls/**/*.mp3")
    assert [i.media_id for i in globbed] == ["deeper/x.mp3"]
    only_txt = read_manifest(f"s3://{bucket}/calls/", media_extensions=["TXT"])
    assert [i.media_id for i in only_txt] == ["notes.txt"]
    with pytest.raises(ManifestError, match="no media files found"):
        read_manifest(f"s3://{bucket}/nothing-here/")


def test_s3_manifest_resolves_relative_keys_and_reports_bad_rows(
    s3fs_fs: Any, make_bucket: Callable[[str], str], tmp_path: Any
) -> None:
    bucket = make_bucket("lists")
    audio = wav_bytes(tmp_path)
    s3fs_fs.pipe(f"{bucket}/manifests/audio/with space.wav", audio)
    s3fs_fs.pipe(f"{bucket}/media/a+b.wav", audio)
    s3fs_fs.pipe(f"{bucket}/manifests/empty.wav", b"")
    csv_text = (
        "source,media_id\n"
        "audio/with space.wav,\n"  # row 2: relative to s3://bucket/manifests/
        "../media/a+b.wav,\n"  # row 3
        f"s3://{bucket}/media/a+b.wav,explicit\n"  # row 4
        "audio/missing.wav,\n"  # row 5
        "s3://no-such-bucket-vx/x.wav,\n"  # row 6
        "empty.wav,\n"  # row 7
    )
    s3fs_fs.pipe(f"{bucket}/manifests/nov.csv", csv_text.encode())
    url = f"s3://{bucket}/manifests/nov.csv"

    with pytest.raises(ManifestError) as exc:
        read_manifest(url)
    lines = str(exc.value).splitlines()[1:]
    assert len(lines) == 3
    assert lines[0].startswith(f"  row 5, column source: checking s3://{bucket}/manifests/audio/")
    assert "no such object" in lines[0]
    assert "bucket s3://no-such-bucket-vx/ does not exist" in lines[1]
    assert lines[2].startswith("  row 7, column source: object is empty (0 bytes)")

    manifest = read_manifest(url, on_invalid="skip")
    assert [(i.media_id, i.source) for i in manifest] == [
        ("audio/with space.wav", f"s3://{bucket}/manifests/audio/with space.wav"),
        (f"s3://{bucket}/media/a+b.wav", f"s3://{bucket}/media/a+b.wav"),
        ("explicit", f"s3://{bucket}/media/a+b.wav"),
    ]
    assert [bad.row for bad in manifest.invalid] == [5, 6, 7]

    # JSONL and Parquet manifests on S3 read the same way.
    s3fs_fs.pipe(f"{bucket}/manifests/n.jsonl", b'{"source": "audio/with space.wav"}\n')
    assert [i.media_id for i in read_manifest(f"s3://{bucket}/manifests/n.jsonl")] == [
        "audio/with space.wav"
    ]
    with s3fs_fs.open(f"{bucket}/manifests/n.parquet", "wb") as fh:
        pq.write_table(pa.table({"source": ["../media/a+b.wav"]}), fh)
    assert [i.source for i in read_manifest(f"s3://{bucket}/manifests/n.parquet")] == [
        f"s3://{bucket}/media/a+b.wav"
    ]
    with pytest.raises(ManifestError, match="no such object"):
        read_manifest(f"s3://{bucket}/manifests/absent.csv")


def test_many_rows_in_one_folder_are_checked_by_listing(
    s3fs_fs: Any, make_bucket: Callable[[str], str]
) -> None:
    bucket = make_bucket("many")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3fs_fs.pipe(f"{bucket}/m/{i:04d}.wav", b"RIFF0000"), range(150)))
    rows = "source\n" + "".join(f"{i:04d}.wav\n" for i in range(151))  # 0150 is missing
    s3fs_fs.pipe(f"{bucket}/m/list.csv", rows.encode())
    manifest = read_manifest(f"s3://{bucket}/m/list.csv", on_invalid="skip")
    assert len(manifest) == 150
    assert [bad.row for bad in manifest.invalid] == [152]
    assert "no such object" in manifest.invalid[0].reason


@pytest.mark.slow
def test_prefix_with_2000_objects_is_listed_completely(
    s3fs_fs: Any, make_bucket: Callable[[str], str]
) -> None:
    bucket = make_bucket("big")
    keys = [f"day/{i % 7}/call {i:05d}.wav" for i in range(2000)]
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: s3fs_fs.pipe(f"{bucket}/{k}", b"RIFF" + k.encode()), keys))
    base, objects = list_media(s3fs_fs, f"s3://{bucket}/day/", frozenset({"wav"}))
    assert base == f"s3://{bucket}/day/"
    assert len(objects) == 2000  # two ListObjectsV2 pages of 1,000
    manifest = read_manifest(f"s3://{bucket}/day/")
    assert len(manifest) == 2000
    assert manifest.items[0].media_id == "0/call 00000.wav"


# --- streaming, presigning and errors ------------------------------------------------------------


class _RecordingClient:
    """Stands in for AssemblyAIClient.upload: reads the stream the way the client does."""

    def __init__(self) -> None:
        self.received = 0
        self.reads: list[int] = []

    async def upload(self, source: Any, *, size: int | None = None) -> Any:
        while chunk := source.read(1024 * 1024):
            self.reads.append(len(chunk))
            self.received += len(chunk)

        class Uploaded:
            upload_url = "http://upload/1"

        return Uploaded()


def test_stage_s3_streams_and_presigns_from_the_resolved_object(
    s3fs_fs: Any, make_bucket: Callable[[str], str], tmp_path: Any
) -> None:
    bucket = make_bucket("stage")
    payload = b"RIFF" + bytes(3 * 1024 * 1024)
    s3fs_fs.pipe(f"{bucket}/a b+ü.wav", payload)
    url = f"s3://{bucket}/a b+ü.wav"
    info = ObjectInfo.from_s3fs(url, s3fs_fs.info(f"{bucket}/a b+ü.wav"))
    size, etag, modified = info.fingerprint.removeprefix("s3:").split(":", 2)
    assert size == str(len(payload)) and len(etag) == 32 and modified.endswith("Z")

    client = _RecordingClient()
    assert asyncio.run(stage_s3(client, info, None)) == "http://upload/1"
    assert client.received == len(payload) and max(client.reads) <= 1024 * 1024

    presigned = asyncio.run(stage_s3(client, info, S3Options(presign=True, presign_expires_s=600)))
    assert "X-Amz-Signature=" in presigned and "X-Amz-Expires=600" in presigned
    # urllib, not httpx: httpx logs every URL it requests, and this one carries the credentials
    # (the suite's leak scanner fails on them unless a Prefect import has raised the log level).
    with urllib.request.urlopen(presigned) as resp:
        assert resp.read() == payload


def test_access_denied_and_throttling_over_http(
    s3fs_fs: Any, make_bucket: Callable[[str], str], s3_fault_proxy: S3FaultProxy
) -> None:
    bucket = make_bucket("faults")
    for name in ("denied.wav", "slow.wav", "always-slow.wav"):
        s3fs_fs.pipe(f"{bucket}/{name}", b"RIFF" + bytes(2048))
    s3_fault_proxy.add(FaultRule("denied.wav", 403, "AccessDenied", "Access Denied"))
    slow = s3_fault_proxy.add(
        FaultRule("/slow.wav", 503, "SlowDown", "Please reduce your request rate.", times=2)
    )
    s3_fault_proxy.add(
        FaultRule("always-slow.wav", 503, "SlowDown", "Please reduce your request rate.")
    )
    options = S3Options(endpoint_url=s3_fault_proxy.endpoint_url, max_attempts=3)
    denied, slow_url, always = (
        f"s3://{bucket}/{n}" for n in ("denied.wav", "slow.wav", "always-slow.wav")
    )

    # Resolving a manifest checks every object once; what it finds decides the row.
    found = stat_many(s3_filesystem(options), [denied, slow_url, always])

    assert isinstance(found[denied], S3AccessDeniedError)
    assert not found[denied].transient and denied in str(found[denied])
    slow_info = found[slow_url]
    assert isinstance(slow_info, SourceInfo) and slow_info.size == 2052 and slow.hits == 2
    assert isinstance(found[always], StorageError) and found[always].transient


# --- output tables on S3 ----------------------------------------------------------------------


def _transcript(i: int) -> dict[str, Any]:
    words = [
        {"text": w, "start": 100 * j, "end": 100 * j + 80, "confidence": 0.9}
        for j, w in enumerate(["hello", "world"])
    ]
    return {
        "id": f"t{i}",
        "status": "completed",
        "text": "hello world",
        "confidence": 0.9,
        "audio_duration": 1,
        "words": words,
    }


def test_tables_written_to_s3_read_back_with_pyarrow_and_duckdb(
    s3fs_fs: Any, make_bucket: Callable[[str], str]
) -> None:
    bucket = make_bucket("lake")
    root = f"s3://{bucket}/voxlake"
    out = OutputRoot.of(root).check_bucket()
    fs, path = out.fsspec, out.path
    day = dt.date(2026, 11, 20)
    with TableSink(path, flow_run_id="run-1", run_date=day, filesystem=fs) as sink:
        for i in range(3):
            sink.add(f"m{i}", _transcript(i), source=f"s3://src/m{i}.wav", options_hash="h")
        presigned = "http://127.0.0.1:9/src/x.wav?X-Amz-Signature=abc&X-Amz-Credential=k"
        sink.add("bad", None, source=presigned, options_hash="h", error=f"fetch {presigned}")

    keys = s3fs_fs.find(f"{bucket}/voxlake")
    assert all(k.endswith(".parquet") and "/run_date=2026-11-20/" in k for k in keys)
    # utterances and the result tables too: a run without speaker labels or understanding
    # features leaves an empty, typed file in each.
    assert {k.split("/")[2] for k in keys} == set(TABLES)

    t = read_table(root, "transcripts")  # s3:// root, default options
    assert t.num_rows == 4 and set(t.column("run_date").to_pylist()) == {day}
    bad = next(r for r in t.to_pylist() if r["media_id"] == "bad")
    assert bad["source"] == "http://127.0.0.1:9/src/x.wav"
    assert "Signature" not in bad["error"]

    words = ds.dataset(
        f"{bucket}/voxlake/words", filesystem=s3fs_fs, format="parquet", partitioning="hive"
    ).to_table()
    assert words.num_rows == 6

    # DuckDB reads through fsspec: its httpfs extension cannot be installed offline.
    con = duckdb.connect()
    con.register_filesystem(s3fs_fs)
    rows = con.sql(
        f"select media_id, count(*) from read_parquet('s3://{bucket}/voxlake/words/**/*.parquet',"
        " hive_partitioning=1) group by media_id order by media_id"
    ).fetchall()
    assert rows == [("m0", 2), ("m1", 2), ("m2", 2)]


def test_a_failed_s3_write_publishes_nothing(
    s3fs_fs: Any, make_bucket: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = make_bucket("atomic")
    path = f"{bucket}/t/part-0.parquet"
    writer = DatasetWriter(f"s3://{bucket}", "words")
    real_write = pq.write_table

    def write_then_fail(table: Any, where: Any, **kw: Any) -> None:
        where.write(bytes(12 * 1024 * 1024))  # past s3fs's block size: a multipart upload starts
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pq, "write_table", write_then_fail)
    with pytest.raises(RuntimeError, match="disk on fire"):
        writer.output.publish_parquet("t/part-0.parquet", pa.table({"a": [1]}))
    monkeypatch.setattr(pq, "write_table", real_write)
    assert not s3fs_fs.exists(path)
    uploads = s3fs_fs.call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
    assert uploads == []  # aborted, not left dangling


def test_output_to_a_missing_bucket_fails_before_any_work() -> None:
    with pytest.raises(S3BucketNotFoundError, match="no-such-lake-vx"):
        OutputRoot.of("s3://no-such-lake-vx/voxlake").check_bucket()


def test_explicit_endpoint_option_reaches_the_same_store(
    moto_s3: Any, make_bucket: Callable[[str], str], s3fs_fs: Any
) -> None:
    bucket = make_bucket("ep")
    s3fs_fs.pipe(f"{bucket}/a.wav", b"RIFF1234")
    fs = s3_filesystem(S3Options(endpoint_url=moto_s3.endpoint_url, region="eu-west-1"))
    info = ObjectInfo.from_s3fs(f"s3://{bucket}/a.wav", fs.info(f"{bucket}/a.wav"))
    assert info.size == 8 and info.etag


def test_content_hash_joins_the_local_fingerprint(tmp_path: Any) -> None:
    import hashlib

    from voxlake.manifest import read_manifest

    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF" + bytes(3 * 1024 * 1024))
    (plain,) = read_manifest(tmp_path).items
    (hashed,) = read_manifest(tmp_path, content_hash=True).items

    st = path.stat()
    assert plain.size == st.st_size and plain.fingerprint == f"{st.st_size}:{st.st_mtime_ns}"
    assert hashed.fingerprint == (
        f"{plain.fingerprint}:sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"
    )


def test_s3_fingerprints_are_pinned(s3fs_fs: Any, make_bucket: Callable[[str], str]) -> None:
    # The ledger keys items by this fingerprint: its form must not change.
    bucket = make_bucket("pin")
    s3fs_fs.pipe(f"{bucket}/calls/a.wav", b"RIFF....WAVEfmt ")
    raw = s3fs_fs.info(f"{bucket}/calls/a.wav")
    modified = raw["LastModified"].astimezone(dt.UTC)
    expected = f"s3:16:c1dde3a20fa9ee08f3b0153b83a08134:{modified:%Y-%m-%dT%H:%M:%SZ}"
    s3fs_fs.pipe(f"{bucket}/calls/list.csv", b"source\na.wav\n")
    # Listed (a prefix manifest) and checked (a manifest file's rows) give the same info.
    for manifest in (f"s3://{bucket}/calls/", f"s3://{bucket}/calls/list.csv"):
        (item,) = read_manifest(manifest).items
        assert item.info is not None
        assert item.info.fingerprint == expected
        assert (item.info.size, item.info.etag) == (16, "c1dde3a20fa9ee08f3b0153b83a08134")
        assert item.info.modified_at == modified


def test_the_same_manifest_read_locally_and_from_s3_gives_the_same_items(
    s3fs_fs: Any, make_bucket: Callable[[str], str], tmp_path: Any
) -> None:
    """One reader for both: only where the sources live (and so their fingerprints) differs."""
    bucket = make_bucket("twin")
    local = tmp_path / "twin"
    files = {"calls/a.wav": b"RIFF-a", "calls/deep/b.mp3": b"ID3-bb", "calls/c.flac": b"fLaC-c"}
    for key, data in files.items():
        s3fs_fs.pipe(f"{bucket}/{key}", data)
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(data)
    csv_text = (
        "source,media_id,speaker_labels,keyterms_prompt\n"
        "a.wav,,yes,\n"
        'deep/b.mp3,bee,,"Prefect, Parquet"\n'
        "https://cdn.example.com/x.mp3?sig=1,,,\n"
        "c.flac,,false,\n"
        "missing.wav,,,\n"  # skipped on both, as row 6
    )
    jsonl_text = "".join(
        json.dumps(row) + "\n"
        for row in ({"source": "a.wav", "speaker_labels": True}, {"source": "deep/b.mp3"})
    )
    buffer = io.BytesIO()
    pq.write_table(pa.table({"source": ["c.flac", "a.wav"], "punctuate": [False, None]}), buffer)
    for name, data in [
        ("list.csv", csv_text.encode()),
        ("list.jsonl", jsonl_text.encode()),
        ("list.parquet", buffer.getvalue()),
    ]:
        s3fs_fs.pipe(f"{bucket}/calls/{name}", data)
        (local / "calls" / name).write_bytes(data)

    def comparable(manifest: Any, root: str) -> tuple[list[Any], list[Any]]:
        items = [(i.media_id, i.source.removeprefix(root), i.options, i.row) for i in manifest]
        invalid = [(bad.row, bad.media_id, bad.source) for bad in manifest.invalid]
        return items, invalid

    s3_root, local_root = f"s3://{bucket}/calls/", f"{local}/calls/"
    expected = {"list.csv": 4, "list.jsonl": 2, "list.parquet": 2, "": 3, "**/*.wav": 1}
    for target, count in expected.items():
        from_s3 = read_manifest(s3_root + target, on_invalid="skip")
        from_disk = read_manifest(local_root + target, on_invalid="skip")
        assert comparable(from_s3, s3_root) == comparable(from_disk, local_root), target
        assert len(from_s3) == count, target
        assert [i.size for i in from_s3] == [i.size for i in from_disk]
        assert {i.kind for i in from_s3} - {SourceKind.http} <= {SourceKind.s3}
        assert {i.kind for i in from_disk} - {SourceKind.http} <= {SourceKind.local}
