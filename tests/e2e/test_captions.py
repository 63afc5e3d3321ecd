"""Captions, sentences and paragraphs through the real `voxlake run` against `voxlake serve-local`.

The server's own request counters prove what was fetched: one srt and one vtt request and one
sentences and one paragraphs request per completed item, counted in the summary's requests,
and none at all on a rerun. The caption files parse with the caption libraries (srt,
webvtt-py) and their cues lie inside the audio.
"""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc
import pytest
import srt
import webvtt

from tests.e2e.test_cli_inputs import clip
from tests.support.clikit import REPO, ServeLocal, clean_env, run_and_crash, run_env, voxlake_run
from voxlake.checks import check_invariants
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.read import read_table

MS = dt.timedelta(milliseconds=1)
SPEECH = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background."


@pytest.fixture
def no_servers() -> Iterator[dict[str, str]]:
    with socket.socket() as sock:  # bound, never listening: a Prefect API that refuses
        sock.bind(("127.0.0.1", 0))
        yield clean_env(PREFECT_API_URL=f"http://127.0.0.1:{sock.getsockname()[1]}/api")


def _route_counts(server: ServeLocal) -> dict[str, int]:
    return dict(server.stats()["requests_by_route"])


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_captions_sentences_and_paragraphs_are_fetched_once_per_item_and_parse(
    tmp_path: Path,
) -> None:

    # A media id with a folder and one with characters a path must not take as they are.
    (tmp_path / "calls").mkdir()
    for i, wav in enumerate((tmp_path / "calls" / "a.wav", tmp_path / "b.wav")):
        write_synth_wav(wav, SPEECH, 3.0, sample_rate=8000, seed=i)
    manifest, out = tmp_path / "list.csv", tmp_path / "out"
    manifest.write_text("source,media_id\ncalls/a.wav,\nb.wav,../b?.wav\n")
    args = [str(manifest), "--output", str(out), "--captions", "srt,vtt"]
    args += ["--chars-per-caption", "24", "--sentences", "--paragraphs"]
    server = ServeLocal(tmp_path)
    try:
        env = run_env(server, VOXLAKE_POLL_FIRST_S="0.2")
        before, requests_before = _route_counts(server), server.requests()

        first = voxlake_run(args, env)

        assert first.returncode == 0, first.stdout + first.stderr
        after = _route_counts(server)
        for route, per_item in (("subtitles", 2), ("sentences", 1), ("paragraphs", 1)):
            assert after.get(route, 0) - before.get(route, 0) == 2 * per_item, (route, after)
        made = server.requests() - requests_before
        assert f", {made} AssemblyAI requests, " in first.stdout.splitlines()[0], first.stdout
        assert f"Captions written under {out}/captions: 4 caption files" in first.stdout

        check_invariants(out)
        # The ledger records both optional tables as filled: nothing to recollect for them.
        dry = subprocess.run(
            [sys.executable, "-m", "voxlake.cli", "recollect", str(out), "--dry-run",
             "--sentences", "--paragraphs"],
            env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert "0 transcripts would be fetched again" in dry.stdout, dry.stdout + dry.stderr
        from voxlake.run.extras import caption_path  # the documented layout

        transcripts = read_table(out, "transcripts").to_pylist()
        assert sorted(t["media_id"] for t in transcripts) == ["../b?.wav", "calls/a.wav"]
        sentences = read_table(out, "sentences")
        paragraphs = read_table(out, "paragraphs")
        for t in transcripts:
            assert t["status"] == "completed", t
            mine = pc.equal(sentences["transcript_id"], t["transcript_id"])
            assert pc.sum(sentences.filter(mine)["word_count"]).as_py() == t["word_count"]
            mine = pc.equal(paragraphs["transcript_id"], t["transcript_id"])
            assert pc.sum(paragraphs.filter(mine)["word_count"]).as_py() == t["word_count"]
            audio_end = t["audio_duration_s"]

            srt_file = out / caption_path("srt", t["media_id"], t["transcript_id"])
            cues = list(srt.parse(srt_file.read_text()))
            assert len(cues) >= 4, srt_file  # 86 characters, 24 a caption
            for cue in cues:
                assert 0 <= cue.start.total_seconds() < cue.end.total_seconds() <= audio_end
                # chars_per_caption reached the server (one word may be longer on its own).
                assert len(cue.content) <= 24 or " " not in cue.content, cue
            vtt_file = out / caption_path("vtt", t["media_id"], t["transcript_id"])
            captions = webvtt.read(str(vtt_file))
            assert [c.text for c in captions] == [c.content for c in cues]
            for caption, cue in zip(captions, cues, strict=True):
                # The same cues in both formats (webvtt-py's seconds are whole: compare in ms).
                start, end = (
                    caption.start_time.in_milliseconds(),
                    caption.end_time.in_milliseconds(),
                )
                assert (start, end) == (cue.start // MS, cue.end // MS), (caption, cue)
        # Every file sits under the output root, whatever the media id says.
        assert not (tmp_path / "b?.wav").exists()
        assert len(_files(out / "captions")) == 4

        # The same command again: nothing to do, no request, no new file.
        files, requests_before = _files(out), server.requests()
        second = voxlake_run(args, env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert server.requests() == requests_before
        assert _files(out) == files
    finally:
        server.stop()


def test_an_unknown_caption_format_is_refused_before_anything_starts(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    clip(tmp_path / "a.wav")
    args = [str(tmp_path / "a.wav"), "--output", str(tmp_path / "out")]

    done = voxlake_run([*args, "--captions", "srt,txt"], no_servers)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "--captions" in done.stderr and "'srt' or 'vtt'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_crash_after_the_commit_never_leaves_an_item_without_its_captions(
    tmp_path: Path,
) -> None:

    from voxlake.run.extras import caption_path

    for name in ("a", "b"):
        media = tmp_path / "media" / f"{name}.wav"
        media.parent.mkdir(exist_ok=True)
        write_synth_wav(media, SPEECH, 3.0, sample_rate=8000, seed=ord(name))
    out = tmp_path / "out"
    args = [str(tmp_path / "media"), "--output", str(out), "--captions", "vtt"]
    server = ServeLocal(tmp_path)
    try:
        env = run_env(server, VOXLAKE_POLL_FIRST_S="0.2")
        # Stopped (then kill -9) once the transcripts rows are published, before the ledger
        # is told: the moment a reader first sees the items as done.
        run_and_crash(args, env, "write")
        committed = read_table(out, "transcripts").to_pylist()
        assert len(committed) == 2
        for row in committed:
            assert (out / caption_path("vtt", row["media_id"], row["transcript_id"])).is_file()

        # The next run collects them again (the ledger was not told): GETs only, no submit.
        submitted = server.submissions()
        again = voxlake_run(args, env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert server.submissions() == submitted
        assert len(_files(out / "captions")) == 2  # the same paths, written again
    finally:
        server.stop()
