"""voxlake.run without Prefect: TranscriptionRun's stages against the emulator over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.flowkit import speech_clips, write_manifest
from voxlake.checks import check_invariants
from voxlake.client import AssemblyAIClient
from voxlake.emulator import LocalServer
from voxlake.lake.read import read_table
from voxlake.manifest import read_manifest
from voxlake.run import collect
from voxlake.run.state import RunSettings
from voxlake.run.summary import RunSummary
from voxlake.run.transcription import TranscriptionRun

FAST_POLLS = RunSettings(poll_first_s=0.05, poll_min_interval_s=0.05, poll_max_interval_s=0.2)


@pytest.mark.parametrize("group_words", [collect._WRITE_GROUP_WORDS, 5])
def test_a_malformed_transcript_fails_alone_at_write_and_its_chunk_is_written(
    tmp_path: Path,
    make_server: Callable[..., LocalServer],
    api: Callable[[LocalServer], None],
    monkeypatch: pytest.MonkeyPatch,
    group_words: int,
) -> None:
    # 5 words: every few transcripts make a write group of their own, so one collect() call
    # writes several groups, the malformed transcript in one of them.
    monkeypatch.setattr(collect, "_WRITE_GROUP_WORDS", group_words)
    server = make_server()
    api(server)
    manifest = read_manifest(write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "a", 6)))
    out = tmp_path / "out"

    async def go() -> RunSummary:
        async with (
            AssemblyAIClient() as client,
            TranscriptionRun(
                manifest, out, client=client, flow_run_id="r", settings=FAST_POLLS
            ) as run,
        ):
            ids = run.media_ids
            ready = await run.wait(await run.submit(await run.upload(ids)))
            assert sorted(ready) == sorted(ids)
            # The server now answers with a word time no int64 column holds: valid JSON and a
            # valid Transcript model, but no row can be built from it.
            assert server.state is not None
            job = server.state.transcripts.get_any(run.records["clip-02"].transcript_id or "")
            assert job is not None and job.result is not None
            words = list(job.result.words)
            words[1] = dataclasses.replace(words[1], start=2**64)
            job.result = dataclasses.replace(job.result, words=words)
            assert await run.collect(ready) == 6
            return await run.finish()

    summary = asyncio.run(go())

    assert (summary.total, summary.completed, summary.failed) == (6, 5, 1)
    (failure,) = summary.failures
    assert (failure.media_id, failure.stage) == ("clip-02", "write")
    assert failure.error.startswith("write: ") and failure.transcript_id
    rows = {r["media_id"]: r for r in read_table(out, "transcripts").to_pylist()}
    assert sorted(rows) == [f"clip-{i:02d}" for i in range(6)]
    assert rows["clip-02"]["status"] == "error"
    assert rows["clip-02"]["transcript_id"] == failure.transcript_id
    assert rows["clip-02"]["word_count"] is None
    words_of = set(read_table(out, "words").column("media_id").to_pylist())
    assert words_of == {f"clip-{i:02d}" for i in range(6)} - {"clip-02"}
    check_invariants(out)


def test_finished_items_are_committed_during_the_run_not_only_at_its_end(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    from voxlake.lake.ledger import Ledger, Status, key_of

    api(make_server())
    manifest = read_manifest(write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "a", 4)))
    out = tmp_path / "out"
    settings = dataclasses.replace(FAST_POLLS, commit_items=1)

    def committed() -> tuple[set[str], set[str]]:
        rows = set(read_table(out, "transcripts").column("media_id").to_pylist())
        states = Ledger.open(str(out), run_id="reader", read_only=True).states
        done = {
            i.media_id
            for i in manifest.items
            if (state := states.get(key_of(i))) and state.status is Status.completed
        }
        return rows, done

    async def go() -> tuple[tuple[set[str], set[str]], list[str]]:
        async with (
            AssemblyAIClient() as client,
            TranscriptionRun(
                manifest, out, client=client, flow_run_id="r", settings=settings
            ) as run,
        ):
            await run.start()
            first = run.media_ids[:2]
            await run.collect(await run.wait(await run.submit(await run.upload(first))))
            mid_run = committed()
            rest = run.media_ids[2:]
            await run.collect(await run.wait(await run.submit(await run.upload(rest))))
            await run.finish()
            return mid_run, first

    (rows, done), first = asyncio.run(go())

    # Before the run finished, the first chunk's rows were published and the ledger knew.
    assert rows == set(first) and done == set(first)
    assert committed() == ({i.media_id for i in manifest.items},) * 2
    check_invariants(out)


def test_jobs_adopted_from_an_earlier_run_are_polled_at_once(
    tmp_path: Path, make_server: Callable[..., LocalServer], api: Callable[[LocalServer], None]
) -> None:
    api(make_server())
    manifest = read_manifest(write_manifest(tmp_path / "m.csv", speech_clips(tmp_path / "a", 3)))
    out = tmp_path / "out"
    # A first poll an hour after the submit: only a resumed job's first poll can come sooner.
    hour = dataclasses.replace(FAST_POLLS, poll_first_s=3600.0)

    async def go() -> RunSummary:
        async with (
            AssemblyAIClient() as client,
            TranscriptionRun(manifest, out, client=client, flow_run_id="r1", settings=hour) as run,
        ):
            await run.start()
            assert len(await run.submit(await run.upload(run.media_ids))) == 3
        # The first run ended without waiting; the next one adopts its jobs.
        async with (
            AssemblyAIClient() as client,
            TranscriptionRun(manifest, out, client=client, flow_run_id="r2", settings=hour) as run,
        ):
            await run.start()
            ids = run.media_ids
            assert {r.origin for r in run.records.values()} == {"resume"}
            assert await run.collect(await run.wait(ids)) == 3
            return await run.finish()

    summary = asyncio.run(go())

    assert (summary.resumed, summary.completed, summary.failed) == (3, 3, 0)
    check_invariants(out)


def test_the_first_poll_delay_comes_from_the_environment_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from voxlake.errors import ConfigurationError
    from voxlake.run.state import RunSettings
    from voxlake.settings import POLL_FIRST_ENV, settings

    # The environment is read once per process (voxlake.settings); this test changes it in
    # process, so it drops the cached reading after each change (and at the end).
    try:
        monkeypatch.delenv(POLL_FIRST_ENV, raising=False)
        settings.cache_clear()
        assert RunSettings().poll_first_s == 3.0
        monkeypatch.setenv(POLL_FIRST_ENV, "0.5")
        settings.cache_clear()
        assert RunSettings().poll_first_s == 0.5
        for bad in ("soon", "-1", "nan"):
            monkeypatch.setenv(POLL_FIRST_ENV, bad)
            settings.cache_clear()
            with pytest.raises(ConfigurationError, match=f"{POLL_FIRST_ENV}='{bad}'"):
                RunSettings()
    finally:
        monkeypatch.undo()
        settings.cache_clear()
