"""End-to-end: the Prefect flow against the local server over HTTP, Parquet read back.

Real parts only: a Prefect test harness (temporary API server + SQLite), the emulator on
127.0.0.1, a plain http.server for URL sources, and the tables read with DuckDB and pyarrow.
"""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)

from tests.flowkit import SENTENCES, run_flow, speech_clips, write_manifest
from tests.secrets import KEY_A
from voxlake.checks import check_invariants
from voxlake.credentials import AssemblyAICredentials
from voxlake.emulator import FaultConfig, FaultSpec, LocalServer
from voxlake.emulator.synth import write_synth_wav
from voxlake.flows.transcribe import transcribe_manifest
from voxlake.lake.read import read_table
from voxlake.manifest import ManifestError
from voxlake.run.progress import Progress

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def http_media(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1, for http(s) manifest sources."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def words_per_transcript(out: Path) -> dict[str, int]:
    rel = duckdb.sql(
        f"select media_id, count(*) from read_parquet('{out}/words/**/*.parquet', "
        "hive_partitioning=1) group by media_id"
    )
    return dict(rel.fetchall())


def test_all_items_complete_and_tables_hold_their_invariants(
    tmp_path: Path,
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
    http_media: tuple[Path, str],
) -> None:
    server = make_server(concurrency_limit=3)
    api(server)
    rows = speech_clips(tmp_path / "media", 8)
    rows[0]["speaker_labels"] = "true"  # per-row option override → utterances table
    served_root, served_url = http_media
    write_synth_wav(served_root / "remote.wav", "Served over plain HTTP.", 1.5, sample_rate=8000)
    rows.append({"source": f"{served_url}/remote.wav", "media_id": "remote"})
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    out = tmp_path / "out"

    state, summary = run_flow(manifest=str(manifest), output=str(out))

    assert state.is_completed()
    assert (summary.total, summary.completed, summary.failed) == (9, 9, 0)
    check_invariants(out)
    transcripts = read_table(out, "transcripts").to_pylist()
    assert sorted(r["media_id"] for r in transcripts) == sorted(r["media_id"] for r in rows)
    by_id = {r["media_id"]: r for r in transcripts}
    # The scripted engine reads the transcript embedded in each clip: the text must round-trip.
    for i in range(8):
        assert by_id[f"clip-{i:02d}"]["text"] == SENTENCES[i % len(SENTENCES)]
    assert by_id["remote"]["text"] == "Served over plain HTTP."
    assert by_id["remote"]["source_size"] is None  # never uploaded: the server fetched it
    assert words_per_transcript(out) == {r["media_id"]: r["word_count"] for r in transcripts}
    speakers = {r["speaker"] for r in read_table(out, "utterances").to_pylist()}
    assert speakers and speakers <= {"A", "B"}

    # Requests per item stay at the minimum: 8 uploads, 9 submits, 9 fetches, a few list pages.
    routes = server.stats()["requests_by_route"]
    assert routes.get("upload") == 8
    assert routes.get("transcript_create") == 9
    assert routes.get("transcript_get") == 9
    assert routes.get("transcript_list", 0) <= 20


def test_mixed_failures_are_recorded_and_transient_faults_recovered(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    faults = FaultConfig(
        seed=7,
        routes={
            # The client tries 5 times: 0.2**5 per request keeps this test far from flaky.
            "upload": FaultSpec(p_503=0.2),
            "transcript_get": FaultSpec(p_503=0.15, p_504=0.05),
            "transcript_create": FaultSpec(p_429=0.2, retry_after_s=1),
        },
    )
    server = make_server(concurrency_limit=5, faults=faults)
    api(server)
    media = tmp_path / "media"
    rows = speech_clips(media, 6)
    # Binary junk passes the client's text sniffing, so the server's decoder rejects it.
    (media / "junk.wav").write_bytes(bytes(range(256)) * 64)
    write_synth_wav(media / "short.wav", "Hi.", 0.1, sample_rate=8000)
    rows += [
        {"source": "media/junk.wav", "media_id": "junk"},
        {"source": "media/short.wav", "media_id": "short"},
        # Passes local validation; the API rejects the language with a 400 (terminal).
        {"source": "media/clip-00.wav", "media_id": "bad-language", "language_code": "xx_zz"},
    ]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    out = tmp_path / "out"

    state, summary = run_flow(manifest=str(manifest), output=str(out))

    assert state.is_completed()  # partial failure is reported, not raised (fail_on_error=False)
    assert summary.completed == 6 and summary.failed == 3
    assert "3 failed" in (state.message or "")
    check_invariants(out)
    rows_by_id = {r["media_id"]: r for r in read_table(out, "transcripts").to_pylist()}
    assert len(rows_by_id) == 9
    assert rows_by_id["junk"]["error"].startswith("File does not appear to contain audio")
    assert rows_by_id["short"]["error"] == "Audio duration is too short."
    bad = rows_by_id["bad-language"]
    assert bad["status"] == "error" and bad["transcript_id"] is None
    assert "HTTP 400" in bad["error"]
    for i in range(6):
        assert rows_by_id[f"clip-{i:02d}"]["status"] == "completed"

    stats = server.stats()
    # The fault plan must really have fired on every route it targets, and been recovered from.
    assert set(stats["faults_injected"]) >= {"upload", "transcript_create", "transcript_get"}
    # The one 400 was answered once and never retried (429s before it are flow control).
    assert stats["requests_by_status"].get("400", stats["requests_by_status"].get(400)) == 1


def test_progress_reaches_the_callback_given_to_the_flow_and_its_artifact(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    api(make_server())
    rows = speech_clips(tmp_path / "media", 4)
    write_synth_wav(tmp_path / "media" / "short.wav", None, 0.05, sample_rate=8000)
    rows.append({"source": "media/short.wav", "media_id": "short"})  # fails at poll
    rows.append({"source": "media/clip-00.wav", "media_id": "bad", "language_code": "xx_zz"})
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    heard: list[Progress] = []

    state, summary = run_flow(
        manifest=str(manifest),
        output=str(tmp_path / "o"),
        chunk_size=2,
        on_progress=heard.append,
    )

    assert (summary.completed, summary.failed) == (4, 2)
    assert heard[0] == Progress("upload", 0, 6)  # the total, once the run has planned
    assert {event.total for event in heard} == {6}
    passed = {event.stage: event.done for event in heard}
    # Failed items count through the stages they never reach: every bar ends full.
    assert passed == {"upload": 6, "submit": 6, "poll": 6, "collect": 6}

    # A deployment's run shows the same in Prefect's UI: one progress artifact, at 100.
    async def progress_artifacts() -> list[tuple[str | None, object]]:
        async with get_client() as client:
            found = await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
                    key=ArtifactFilterKey(any_=["voxlake-run-progress"]),
                )
            )
            return [(a.type, a.data) for a in found]

    assert asyncio.run(progress_artifacts()) == [("progress", 100.0)]


def test_fail_on_error_fails_the_flow_run(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    api(make_server())
    rows = speech_clips(tmp_path / "media", 2)
    write_synth_wav(tmp_path / "media" / "short.wav", None, 0.05, sample_rate=8000)
    rows.append({"source": "media/short.wav", "media_id": "short"})
    manifest = write_manifest(tmp_path / "manifest.csv", rows)

    state, summary = run_flow(
        manifest=str(manifest), output=str(tmp_path / "o"), fail_on_error=True
    )

    assert state.is_failed()
    assert [f.media_id for f in summary.failures] == ["short"]


def test_invalid_rows_fail_fast_before_any_upload(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    server = make_server()
    api(server)
    rows = speech_clips(tmp_path / "media", 2)
    rows += [
        {"source": "media/missing.wav", "media_id": "missing"},
        {"source": "", "media_id": "empty"},
    ]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)

    with pytest.raises(ManifestError) as info:
        asyncio.run(transcribe_manifest(manifest=str(manifest), output=str(tmp_path / "o")))

    text = str(info.value)
    assert "row 4" in text and "row 5" in text  # header is row 1
    assert server.stats()["requests_by_route"].get("upload", 0) == 0


def test_skip_invalid_rows_records_them_and_runs_the_rest(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    api(make_server())
    rows = speech_clips(tmp_path / "media", 3)
    rows += [
        {"source": "media/missing.wav", "media_id": "missing"},
        {"source": "media/clip-00.wav", "media_id": "clip-00"},  # duplicate media_id
    ]
    manifest = write_manifest(tmp_path / "manifest.csv", rows)
    out = tmp_path / "out"

    state, summary = run_flow(manifest=str(manifest), output=str(out), on_invalid="skip")

    assert state.is_completed()
    assert (summary.completed, summary.failed) == (3, 2)
    check_invariants(out)
    errors = {
        r["media_id"]: r["error"]
        for r in read_table(out, "transcripts").to_pylist()
        if r["status"] == "error"
    }
    assert set(errors) == {"missing", "clip-00@row6"}
    assert errors["missing"].startswith("manifest row 5")
    assert "duplicate" in errors["clip-00@row6"].lower()


@pytest.mark.parametrize("given", ["environment", "credentials"])
def test_api_key_reaches_neither_parameters_nor_artifacts_nor_tables(
    tmp_path: Path,
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
    monkeypatch: pytest.MonkeyPatch,
    given: str,
) -> None:
    server = make_server()
    manifest = write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "media", 2))
    out = tmp_path / "out"
    if given == "environment":
        api(server)
        state, _ = run_flow(manifest=str(manifest), output=str(out))
    else:  # an unsaved block handed to the flow, as voxlake run does for its embedded server
        for name in ("ASSEMBLYAI_API_KEY", "ASSEMBLYAI_BASE_URL", "ASSEMBLYAI_REGION"):
            monkeypatch.delenv(name, raising=False)
        credentials = AssemblyAICredentials(api_key=KEY_A, base_url=server.base_url)
        state, _ = run_flow(manifest=str(manifest), output=str(out), credentials=credentials)

    async def stored() -> str:
        async with get_client() as client:
            task_run = await client.read_flow_run(state.state_details.flow_run_id)
            artifacts = await client.read_artifacts()
            return repr(task_run.parameters) + repr([a.data for a in artifacts])

    stored_text = asyncio.run(stored())
    assert "voxlake run summary" in stored_text  # the artifacts were really read
    assert KEY_A not in stored_text
    for parquet in out.rglob("*.parquet"):
        assert KEY_A.encode() not in parquet.read_bytes()


def test_credentials_and_a_credentials_block_together_are_refused(tmp_path: Path) -> None:
    credentials = AssemblyAICredentials(api_key=KEY_A, base_url="http://127.0.0.1:9")
    state = asyncio.run(
        transcribe_manifest(
            manifest=str(tmp_path / "m.csv"),
            output=str(tmp_path / "out"),
            credentials=credentials,
            credentials_block="assemblyai-prod",
            return_state=True,
        )
    )
    assert state.is_failed()
    assert state.message == "give credentials or credentials_block, not both"
    assert not (tmp_path / "out").exists()


def test_ambiguous_submit_failures_adopt_the_job_instead_of_paying_twice(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    # Every submission is created server-side, then the connection drops mid-response: the
    # client cannot know the job exists, and blindly resubmitting would bill twice.
    server = make_server(faults=FaultConfig(routes={"transcript_create": FaultSpec(p_reset=1.0)}))
    api(server)
    manifest = write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "media", 4))
    out = tmp_path / "out"

    _, summary = run_flow(manifest=str(manifest), output=str(out))

    assert (summary.completed, summary.failed) == (4, 0), summary.failures
    stats = server.stats()
    assert stats["requests_by_route"]["transcript_create"] == 4  # one job per item, never two
    assert stats["faults_injected"]["transcript_create"]
    check_invariants(out)
