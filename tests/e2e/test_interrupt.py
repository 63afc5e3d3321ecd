"""Ctrl-C and ``kill -9`` on `voxlake run` with the embedded default, then the same command.

The run is a real process in its own session with no ``ASSEMBLYAI_*`` variable: it starts the
embedded local server (the scripted engine through ``VOXLAKE_ENGINE``, except the interrupted
run of the Ctrl-C test, which keeps the default sphinx engine: its pool is what an interrupt
must leave without a leaked-semaphore warning), which keeps its jobs under the test's own cache
directory (``XDG_CACHE_HOME``). The interrupted run gets SIGINT (or SIGKILL)
to its whole process group, as a terminal's Ctrl-C does, once its ledger shows jobs submitted;
the clips are long enough that some are still queued or processing then. Counting: every job
the embedded server ever accepted is one record in its state directory, which outlives both
runs, and the ledger names one transcript id per item.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests.support.clikit import LOCAL_KEY, REPO, clean_env, wait_until
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.read import read_current

pytestmark = pytest.mark.slow

CLIPS = 6  # the embedded server runs 5 at a time: one waits in its queue
INTERRUPTED = "Interrupted: jobs already submitted are kept"


def clips_run(tmp_path: Path, n: int = CLIPS) -> list[str]:
    """The arguments of a run over ``n`` long clips in ``tmp_path/media`` into ``tmp_path/out``:
    at the embedded server's 0.02 s per audio second, 1.5 to 2.5 s per job."""
    folder = tmp_path / "media"
    folder.mkdir(parents=True)
    for i in range(n):
        write_synth_wav(folder / f"clip-{i:02d}.wav", "the birch canoe slid on the smooth planks",
                        60 + 5 * i, sample_rate=8000, seed=i)  # fmt: skip
    # No HTML report: these tests are about the jobs, and drawing it is most of a run's CPU.
    return [str(folder), "--output", str(tmp_path / "out"), "--no-report"]


def embedded_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No AssemblyAI variables (the embedded default); a cache of the test's own."""
    return clean_env(
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        VOXLAKE_ENGINE="scripted",
        **extra,
    )


def ledger(out: Path) -> list[dict[str, object]]:
    files = sorted((out / "_ledger" / "events").glob("*.parquet"))
    rows: list[dict[str, object]] = []
    for f in files:
        rows += pq.read_table(f, columns=["media_id", "status", "transcript_id"]).to_pylist()
    return rows


def submitted(out: Path) -> int:
    return len({r["media_id"] for r in ledger(out) if r["status"] == "submitted"})


def server_jobs(tmp_path: Path) -> list[Path]:
    """Every job the embedded server accepted, over all runs (one record each)."""
    return sorted((tmp_path / "cache" / "voxlake" / "embedded-server").glob("*/transcripts/*.json"))


def group_alive(pgid: int) -> list[str]:
    """Processes of the group that are not zombies: their command lines."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(cmd)
    return alive


def interrupt_run(tmp_path: Path, args: list[str], env: dict[str, str], signum: int) -> str:
    """Start `voxlake run`, send ``signum`` to its process group once jobs are in flight, and
    check that the group is gone within 15 s. Returns its output."""
    log = tmp_path / f"run-{signum}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "voxlake.cli", "run", *args, "--no-progress"],
            env=env,
            cwd=REPO,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    out = Path(args[args.index("--output") + 1])
    try:

        def in_flight() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the interrupt:\n{log.read_text()}")
            return submitted(out) >= 3

        wait_until(in_flight, "three jobs submitted", deadline_s=240)
        sent = time.monotonic()
        os.killpg(proc.pid, signum)

        def gone() -> bool:
            proc.poll()  # reaps the run itself, so only its helpers can keep the group alive
            return not group_alive(proc.pid)

        wait_until(gone, "the process group to go", deadline_s=15)
        print(f"group gone {time.monotonic() - sent:.1f} s after signal {signum}")
    finally:
        if group_alive(proc.pid):  # the test failed above: leave nothing behind
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    output = log.read_text()
    if signum == signal.SIGINT:
        assert proc.returncode == 130, output
    return output


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxlake.cli", "run", *args, "--no-progress"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rerun_completes_every_item_once(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    done = run(args, env)
    output = done.stdout + done.stderr
    out = Path(args[args.index("--output") + 1])
    assert done.returncode == 0, output
    view = read_current(out).select(["media_id", "status"]).to_pylist()
    assert sorted((r["media_id"], r["status"]) for r in view) == [
        (f"clip-{i:02d}.wav", "completed") for i in range(CLIPS)
    ], output
    ids: dict[object, set[object]] = {}
    for row in ledger(out):
        if row["transcript_id"] is not None:
            ids.setdefault(row["media_id"], set()).add(row["transcript_id"])
    assert all(len(t) == 1 for t in ids.values()), f"an item has two jobs: {ids}"
    assert len(server_jobs(tmp_path)) == CLIPS, "a job was submitted twice"


@pytest.mark.parametrize("host", ["in-process", "prefect-flow"])
def test_ctrl_c_stops_the_run_at_once_and_the_same_command_finishes_it(
    tmp_path: Path, host: str, request: pytest.FixtureRequest
) -> None:
    args = clips_run(tmp_path)
    # The default engine (sphinx): its recognition workers are what Ctrl-C must stop, and its
    # multiprocessing primitives what must not be reported as leaked once the run is gone.
    # Without a Prefect API (a new user's) the job runs in the CLI's process; with one, as a
    # flow run there, which Ctrl-C must cancel.
    prefect = (
        {"PREFECT_API_URL": request.getfixturevalue("prefect_url")}
        if host == "prefect-flow"
        else {}
    )
    env = embedded_env(tmp_path, **prefect)
    del env["VOXLAKE_ENGINE"]

    output = interrupt_run(tmp_path, args, env, signal.SIGINT)

    lines = [line for line in output.splitlines() if line.startswith("Interrupted")]
    assert len(lines) == 1 and lines[0].startswith(INTERRUPTED), output
    assert "Traceback" not in output and "Error" not in output, output
    assert "resource_tracker" not in output and "leaked" not in output, output
    assert output.strip().endswith(lines[0]), output  # the last word, once everything stopped
    # The same command. Its server resumes the jobs with the scripted engine: quick on 6 long
    # clips.
    env["VOXLAKE_ENGINE"] = "scripted"
    rerun_completes_every_item_once(tmp_path, args, env)


def test_kill_9_of_the_group_then_the_same_command_finishes_it(tmp_path: Path) -> None:
    args = clips_run(tmp_path)
    env = embedded_env(tmp_path)

    interrupt_run(tmp_path, args, env, signal.SIGKILL)

    rerun_completes_every_item_once(tmp_path, args, env)


def test_jobs_gone_from_the_server_are_said_once_with_the_command_that_retries_them(
    tmp_path: Path,
) -> None:
    args = clips_run(tmp_path)
    env = embedded_env(tmp_path)
    interrupt_run(tmp_path, args, env, signal.SIGKILL)
    events = ledger(tmp_path / "out")
    done = {r["media_id"] for r in events if r["status"] == "completed"}
    gone = len({r["media_id"] for r in events if r["status"] == "submitted"} - done)
    # The embedded server's state is lost (a cleared cache): the submitted jobs are gone.
    shutil.rmtree(tmp_path / "cache" / "voxlake" / "embedded-server", ignore_errors=True)

    rerun = run(args, env)

    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output
    said = [line for line in output.splitlines() if "could not be resumed" in line]
    assert len(said) == 1 and said[0].startswith(f"{gone} items could not be resumed"), output
    # No HTTP 404 text; as a whole word, since a transcript id (a UUID) may hold "404".
    assert not re.search(r"\b404\b", output) and "Traceback" not in output, output
    printed = shlex.split(said[0].split("(paid again): ", 1)[1])
    # As voxlake_command prints it: `voxlake`, `uv run voxlake` or this interpreter's -m voxlake.cli
    assert printed[-len(args) - 3 :] == ["run", *args, "--no-progress", "--retry-failed"], printed
    assert output.count("--retry-failed") == 1, output  # the command once, on that line


def test_ctrl_c_stops_serve_local_mid_recognition_and_its_state_dir_finishes_the_job(
    tmp_path: Path,
) -> None:
    """The real recogniser (sphinx) busy on a job: Ctrl-C to the group stops the server and its
    recognition workers (not respawned), and a server started on the same --state-dir
    finishes the job."""
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "voxlake.cli", "serve-local", "--port", "0", "--engine"]
    cmd += ["sphinx", "--state-dir", str(state), "--api-key", LOCAL_KEY, "--log-level", "ERROR"]

    def start(log: Path) -> tuple[subprocess.Popen[bytes], str]:
        with log.open("w") as fh:
            proc = subprocess.Popen(
                cmd, cwd=REPO, env=clean_env(), stdout=fh, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

        def address() -> str | None:
            assert proc.poll() is None, log.read_text()
            found = re.search(r"voxlake local server on (http://\S+)", log.read_text())
            return found.group(1) if found else None

        return proc, wait_until(address, "serve-local to print its address")

    first_log = tmp_path / "first.log"
    proc, url = start(first_log)
    auth = {"Authorization": LOCAL_KEY}
    try:
        with httpx.Client(base_url=url, headers=auth, timeout=60) as http:
            media = (REPO / "data" / "media" / "harvard-01.wav").read_bytes()
            upload_url = http.post("/v2/upload", content=media).json()["upload_url"]
            job = http.post(
                "/v2/transcript", json={"audio_url": upload_url, "speech_models": ["universal-2"]}
            ).json()

            def recognising() -> bool:
                workers = [c for c in group_alive(proc.pid) if "multiprocessing.spawn" in c]
                status = http.get(f"/v2/transcript/{job['id']}").json()["status"]
                assert status != "completed", "the job ended before the interrupt"
                return status == "processing" and bool(workers)

            wait_until(recognising, "the recognition workers to be busy on the job")
        os.killpg(proc.pid, signal.SIGINT)

        def gone() -> bool:
            proc.poll()
            return not group_alive(proc.pid)

        wait_until(gone, "serve-local's process group to go", deadline_s=15)
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    output = first_log.read_text()
    assert proc.returncode == 130, output
    assert output.strip().splitlines()[-1] == (
        f"Interrupted: the local server stopped; its jobs are kept in {state}."
    ), output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output

    again, url = start(tmp_path / "second.log")
    try:
        with httpx.Client(base_url=url, headers=auth, timeout=60) as http:

            def finished() -> dict[str, object] | None:
                body: dict[str, object] = http.get(f"/v2/transcript/{job['id']}").json()
                return body if body["status"] in ("completed", "error") else None

            done = wait_until(finished, "the restarted server to finish the job")
    finally:
        os.killpg(again.pid, signal.SIGINT)
        again.wait(timeout=60)
    assert done["status"] == "completed" and done["text"], done
