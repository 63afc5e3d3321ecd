"""What `voxlake run` takes, and what it says when something is wrong: the real CLI.

Input errors (a missing path, a bad manifest row, a bad option value) stop the command before
it starts any server: these tests point ``PREFECT_API_URL`` at a port where nothing listens, so
a command that reached Prefect would fail differently, and leave no AssemblyAI API configured,
so one that started the embedded server would say so. The message is printed once, without a
traceback, with exit code 2.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clikit import ServeLocal, clean_env, run_env, voxlake_run
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.read import read_current


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening, for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def no_servers(closed_port: int) -> dict[str, str]:
    """No AssemblyAI API configured, and a Prefect API that refuses every connection."""
    return clean_env(PREFECT_API_URL=f"http://127.0.0.1:{closed_port}/api")


def clip(path: Path, seconds: float = 0.5, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_synth_wav(path, "the birch canoe", seconds, sample_rate=8000, seed=seed)


def assert_one_input_error(done: object, *expected: str) -> list[str]:
    """Exit 2 before any server, one ``error:`` message (its lines) holding ``expected``."""
    import subprocess

    assert isinstance(done, subprocess.CompletedProcess)
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out and "Errno" not in out, out
    assert "embedded local" not in out, out  # no AssemblyAI server was started
    lines = done.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), out
    assert sum(line.startswith("error:") for line in lines) == 1, out
    for text in expected:
        assert out.count(text) == 1, f"{text!r} not printed exactly once:\n{out}"
    return lines


# --- what a run takes -------------------------------------------------------------------------


@pytest.mark.slow
def test_one_media_file_is_a_one_item_run(tmp_path: Path, server: ServeLocal) -> None:
    media = clip(tmp_path / "calls" / "clip.wav")
    clip(tmp_path / "calls" / "other.wav", seed=1)  # beside it, not part of the run
    out = tmp_path / "out"

    done = voxlake_run([str(media), "--output", str(out)], run_env(server))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1/1 completed" in done.stdout, done.stdout + done.stderr
    view = read_current(out).select(["media_id", "source", "status"]).to_pylist()
    assert view == [{"media_id": "clip.wav", "source": str(media), "status": "completed"}]
    assert server.submissions() == 1


@pytest.mark.slow
def test_one_s3_object_is_a_one_item_run(
    tmp_path: Path, make_bucket: object, s3fs_fs: object
) -> None:
    bucket = make_bucket("clip")  # type: ignore[operator]
    s3fs_fs.put(str(clip(tmp_path / "clip.wav", seconds=2.0)), f"{bucket}/calls/clip.wav")  # type: ignore[attr-defined]
    s3fs_fs.put(str(clip(tmp_path / "other.wav")), f"{bucket}/calls/other.wav")  # type: ignore[attr-defined]
    env = clean_env()

    done = voxlake_run(
        [f"s3://{bucket}/calls/clip.wav", "--output", str(tmp_path / "out"), "--dry-run"], env
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "would submit 1 items (1 new, 0 retried), 0.0006 audio hours (2.0 s)" in done.stdout


# --- input errors: before any server, once ----------------------------------------------------


def test_a_missing_folder_is_one_line_naming_it(tmp_path: Path, no_servers: dict[str, str]) -> None:
    missing = tmp_path / "recordings"

    done = voxlake_run([str(missing), "--output", str(tmp_path / "out")], no_servers)

    (line,) = assert_one_input_error(done, str(missing))
    assert "no such file or folder" in line and "check the path" in line, line


def test_a_missing_media_file_is_one_line_naming_it(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    missing = tmp_path / "clip.wav"

    done = voxlake_run([str(missing), "--output", str(tmp_path / "out")], no_servers)

    (line,) = assert_one_input_error(done, str(missing))
    assert "no such file or folder" in line, line


def test_a_file_neither_media_nor_manifest_says_what_the_cli_can_do(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("source\nclip.wav\n")

    done = voxlake_run([str(notes), "--output", str(tmp_path / "out")], no_servers)

    (line,) = assert_one_input_error(done, str(notes))
    assert "format=" not in line, line  # a Python argument: the CLI has no such option
    assert ".csv" in line and "--media-extensions" in line, line


def test_a_bad_manifest_row_is_reported_once_before_any_server(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    clip(tmp_path / "a.wav")
    clip(tmp_path / "b.wav")
    manifest = tmp_path / "list.csv"
    manifest.write_text("source,speakers_expected\na.wav,\nmissing.wav,\nb.wav,two\n")

    done = voxlake_run([str(manifest), "--output", str(tmp_path / "out")], no_servers)

    lines = assert_one_input_error(done, "row 3", "row 4", f"{tmp_path}/missing.wav")
    assert len(lines) == 3, done.stderr  # the heading and one line per problem
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("hours", ["-1", "0", "nan"])
def test_a_budget_that_is_not_positive_is_refused(
    tmp_path: Path, no_servers: dict[str, str], hours: str
) -> None:
    clip(tmp_path / "media" / "a.wav")

    done = voxlake_run(
        [str(tmp_path / "media"), "--output", str(tmp_path / "out"), "--max-audio-hours", hours],
        no_servers,
    )

    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "Traceback" not in out
    assert "--max-audio-hours" in out and "more than 0" in out, out
    assert not (tmp_path / "out").exists()


def test_an_s3_option_out_of_range_names_the_cli_option(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    clip(tmp_path / "media" / "a.wav")

    args = ["--output", str(tmp_path / "out"), "--presign", "--presign-expires", "10"]

    done = voxlake_run([str(tmp_path / "media"), *args], no_servers)

    (line,) = assert_one_input_error(done, "--presign-expires")
    assert "greater than or equal to 60" in line, line


def test_an_option_value_the_request_model_refuses_names_the_option(
    tmp_path: Path, no_servers: dict[str, str]
) -> None:
    """The run's request (voxlake.request.RunRequest) checks every option, before any server:
    --max-uploads 0 would otherwise leave no upload slot at all."""
    clip(tmp_path / "media" / "a.wav")

    args = ["--output", str(tmp_path / "out"), "--max-uploads", "0"]
    done = voxlake_run([str(tmp_path / "media"), *args], no_servers)

    (line,) = assert_one_input_error(done, "--max-uploads")
    assert "greater than or equal to 1" in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_refuses_a_budget_that_is_not_positive(tmp_path: Path) -> None:
    from voxlake.flows.transcribe import transcribe_manifest

    clip(tmp_path / "media" / "a.wav")
    state = asyncio.run(
        transcribe_manifest(
            manifest=str(tmp_path / "media"),
            output=str(tmp_path / "out"),
            max_audio_hours=-1.0,
            dry_run=True,
            return_state=True,
        )
    )

    assert state.is_failed()
    assert "max_audio_hours" in str(state.message), state.message
    assert not (tmp_path / "out").exists()


# --- the budget admits what fits ---------------------------------------------------------------


@pytest.mark.slow
def test_a_budget_smaller_than_the_longest_file_admits_the_rest(
    tmp_path: Path, server: ServeLocal
) -> None:
    media, out = tmp_path / "media", tmp_path / "out"
    # Manifest (path) order: a, b, c, d, e. b alone is longer than the whole budget.
    for i, (name, seconds) in enumerate([("a", 0.5), ("b", 3.0), ("c", 0.5), ("d", 0.5)]):
        clip(media / f"{name}.wav", seconds, seed=i)
    clip(media / "e.wav", 1.5, seed=9)
    env = run_env(server)
    args = [str(media), "--output", str(out), "--max-audio-hours", f"{2.2 / 3600:.8f}"]

    dry = voxlake_run([*args, "--dry-run"], env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "would submit 3 items" in dry.stdout and "defer 2 over the budget" in dry.stdout, (
        dry.stdout
    )

    done = voxlake_run(args, env)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 deferred by the budget" in done.stdout, done.stdout
    # In manifest order, each item that still fits: a, c, d (1.5 s); b and then e do not.
    assert server.submissions() == 3
    view = {r["media_id"]: r["status"] for r in read_current(out).to_pylist()}
    assert {m for m, s in view.items() if s == "completed"} == {"a.wav", "c.wav", "d.wav"}


# --- messages about the API -------------------------------------------------------------------
# A wrong key: tests/e2e/test_ledger_cli.py, test_a_wrong_api_key_stops_after_one_request.


@pytest.mark.slow
def test_an_unreachable_server_is_named_by_its_url(tmp_path: Path, closed_port: int) -> None:
    clip(tmp_path / "media" / "a.wav")
    base_url = f"http://127.0.0.1:{closed_port}"
    env = clean_env(
        ASSEMBLYAI_BASE_URL=base_url,
        ASSEMBLYAI_API_KEY="some-key-9c2d",
    )

    done = voxlake_run([str(tmp_path / "media"), "--output", str(tmp_path / "out")], env)

    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert "some-key-9c2d" not in out and "Traceback" not in out, out
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"cannot reach AssemblyAI at {base_url}" in error, error
    assert "connection refused" in error and "ASSEMBLYAI_BASE_URL" in error, error
    assert out.count(f"cannot reach AssemblyAI at {base_url}") == 1, out
