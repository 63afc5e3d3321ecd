"""Webhook mode of `voxlake run`, end to end: real processes only.

`voxlake serve-local` (its own process, counting requests by route) delivers each job's
notification to `voxlake webhooks OUT` (the receiver process, recording under OUT), and
`voxlake run --webhook-url ...` waits on those records instead of polling. The server's counters
prove what was requested: ``transcript_list`` is the key check plus every status round.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_webhooks import HEADER, Receiver
from tests.support.clikit import (
    LOCAL_KEY,
    ServeLocal,
    clean_env,
    process_state,
    run_env,
    voxlake_run,
    wait_until,
)
from tests.support.prefect_server import free_port
from tests.support.secrets import WEBHOOK_SECRET
from voxlake.checks import check_invariants
from voxlake.emulator.synth import write_synth_wav
from voxlake.lake.ledger import Ledger, Status
from voxlake.lake.read import read_table
from voxlake.lake.views import connect
from voxlake.webhooks import pending_notifications

pytestmark = [pytest.mark.slow]

CLIPS = 4


def _media(tmp: Path) -> Path:
    media = tmp / "media"
    media.mkdir()
    for i in range(CLIPS):
        write_synth_wav(media / f"clip-{i}.wav", f"webhook clip {i}", 1.0, seed=i)
    return media


def _hooked(receiver: Receiver, *, safety_s: float = 30.0) -> list[str]:
    return [
        "--webhook-url",
        receiver.url,
        "--webhook-auth-header-name",
        HEADER,
        "--webhook-auth-header-value-env",
        "HOOK_AUTH",
        "--webhook-safety-poll-s",
        str(safety_s),
    ]


def _run(
    server: ServeLocal, media: Path, out: Path, *args: str, secret: str = WEBHOOK_SECRET
) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    """`voxlake run MEDIA -o OUT ARGS`, and the requests it cost, by route."""

    before = server.stats()["requests_by_route"]
    done = voxlake_run(
        [str(media), "--output", str(out), "--no-report", *args],
        run_env(server, HOOK_AUTH=secret),
    )
    after = server.stats()["requests_by_route"]
    spent = {route: n - before.get(route, 0) for route, n in after.items()}
    assert WEBHOOK_SECRET not in done.stdout + done.stderr
    return done, {route: n for route, n in spent.items() if n}


def _transcripts(out: Path) -> list[dict[str, Any]]:
    return read_table(out, "transcripts", columns=["media_id", "status"]).to_pylist()


def test_a_webhook_run_collects_every_item_without_a_status_poll(
    tmp_path: Path, server: ServeLocal
) -> None:
    media = _media(tmp_path)
    out = tmp_path / "out"
    receiver = Receiver(tmp_path / "receiver.log", str(out))
    try:
        done, spent = _run(server, media, out, *_hooked(receiver))
    finally:
        receiver.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{CLIPS}/{CLIPS} completed" in done.stdout, done.stdout + done.stderr
    # One GET per notified job, and no status round: the one list request is the key check.
    assert spent["transcript_get"] == CLIPS, spent
    assert spent["transcript_list"] == 1, spent
    assert server.stats()["webhooks_delivered"] == CLIPS
    assert sorted(r["status"] for r in _transcripts(out)) == ["completed"] * CLIPS
    assert pending_notifications(str(out)) == []  # acknowledged once collected
    assert WEBHOOK_SECRET not in receiver.log.read_text()

    # The same media polled (a fresh output): status rounds the webhook run did without.
    polled, polled_spent = _run(server, media, tmp_path / "polled")
    assert polled.returncode == 0, polled.stdout + polled.stderr
    assert polled_spent["transcript_list"] > spent["transcript_list"], polled_spent


def test_refused_notifications_are_collected_by_the_safety_net_poll(
    tmp_path: Path, server: ServeLocal
) -> None:
    media = _media(tmp_path)
    out = tmp_path / "out"
    receiver = Receiver(tmp_path / "receiver.log", str(out))
    try:
        # The jobs carry a header value the receiver does not know: every notification is
        # forged as far as it is concerned (401, not retried), so none lands.
        done, spent = _run(
            server, media, out, *_hooked(receiver, safety_s=2.0), secret="forged-Hq7Zt1"
        )
        assert server.stats()["webhooks_failed"] == CLIPS
        assert pending_notifications(str(out)) == []  # nothing recorded
        assert "webhook refused (401)" in receiver.log.read_text()
    finally:
        receiver.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{CLIPS}/{CLIPS} completed" in done.stdout, done.stdout + done.stderr
    assert spent["transcript_list"] >= 2, spent  # the key check and the net's rounds
    assert sorted(r["status"] for r in _transcripts(out)) == ["completed"] * CLIPS


def test_detach_submits_and_returns_then_a_plain_rerun_collects_without_paying(
    tmp_path: Path, server: ServeLocal
) -> None:
    media = _media(tmp_path)
    out = tmp_path / "out"
    receiver = Receiver(tmp_path / "receiver.log", str(out))
    try:
        detached, spent = _run(server, media, out, *_hooked(receiver), "--detach")
        assert detached.returncode == 0, detached.stdout + detached.stderr
        assert f"{CLIPS} submitted, to be collected later" in detached.stdout, detached.stdout
        assert spent["transcript_create"] == CLIPS and "transcript_get" not in spent, spent
        assert _transcripts(out) == []  # nothing collected, nothing failed
        wait_until(lambda: len(pending_notifications(str(out))) == CLIPS, "the notifications")
    finally:
        receiver.stop()
    # No webhook options at all: the webhook fields are not in the options hash, so the same
    # items are found submitted and resumed, not submitted again.
    rerun, spent = _run(server, media, out)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{CLIPS}/{CLIPS} completed" in rerun.stdout and f"{CLIPS} resumed" in rerun.stdout
    assert "transcript_create" not in spent and "upload" not in spent, spent
    assert sorted(r["status"] for r in _transcripts(out)) == ["completed"] * CLIPS


def test_a_duplicate_notification_is_collected_once(tmp_path: Path, server: ServeLocal) -> None:
    media = _media(tmp_path)
    out = tmp_path / "out"
    receiver = Receiver(tmp_path / "receiver.log", str(out))
    try:
        detached, _ = _run(server, media, out, *_hooked(receiver), "--detach")
        assert detached.returncode == 0, detached.stdout + detached.stderr
        wait_until(lambda: len(pending_notifications(str(out))) == CLIPS, "the notifications")
        notes = pending_notifications(str(out))
        # AssemblyAI sends again when our 200 was late: every notification a second time.
        for note in notes:
            body = {"transcript_id": note.transcript_id, "status": note.status}
            assert receiver.post(body, **{HEADER: WEBHOOK_SECRET}).status_code == 200
        assert {n.deliveries for n in pending_notifications(str(out))} == {2}
        # The rerun in webhook mode collects the notified jobs: one GET each, one row each.
        rerun, spent = _run(server, media, out, *_hooked(receiver))
    finally:
        receiver.stop()
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{CLIPS}/{CLIPS} completed" in rerun.stdout, rerun.stdout + rerun.stderr
    assert spent["transcript_get"] == CLIPS and "transcript_create" not in spent, spent
    rows = _transcripts(out)
    assert sorted(r["media_id"] for r in rows) == sorted({r["media_id"] for r in rows})
    assert len(rows) == CLIPS
    assert pending_notifications(str(out)) == []


def test_the_receivers_collector_collects_a_detached_run_without_another_run(
    tmp_path: Path, server: ServeLocal
) -> None:
    media = _media(tmp_path)
    out = tmp_path / "out"
    endpoint = {"ASSEMBLYAI_BASE_URL": server.base_url, "ASSEMBLYAI_API_KEY": LOCAL_KEY}
    receiver = Receiver(tmp_path / "receiver.log", str(out), "--collect", **endpoint)
    try:
        before = server.stats()["requests_by_route"]
        # --captions srt: what the detached run asks for besides the rows, the collector does.
        detached, _ = _run(server, media, out, *_hooked(receiver), "--detach", "--captions", "srt")
        assert detached.returncode == 0, detached.stdout + detached.stderr
        assert f"{CLIPS} submitted, to be collected later" in detached.stdout, detached.stdout

        def collected() -> bool:
            rows = _transcripts(out) if (out / "transcripts").is_dir() else []
            return len(rows) >= CLIPS and not pending_notifications(str(out))

        # No other `voxlake run`: the receiver's collector alone.
        wait_until(collected, "the collector to collect every detached job")
        after = server.stats()["requests_by_route"]
        spent = {r: n - before.get(r, 0) for r, n in after.items() if n - before.get(r, 0)}
        # Paid once: one upload and one create per item (the detached run's); then one GET per
        # item (the collector's), and no status poll at all (the one list: the key check).
        assert spent["upload"] == CLIPS and spent["transcript_create"] == CLIPS, spent
        assert spent["transcript_get"] == CLIPS and spent["transcript_list"] == 1, spent
        assert spent["subtitles"] == CLIPS, spent
        assert len(list((out / "captions" / "srt").glob("*/*.srt"))) == CLIPS

        # AssemblyAI sends every notification again (our 200 was late): recorded, then
        # acknowledged by the collector as done, without fetching anything again.
        for tid in _ledger_transcript_ids(out):
            body = {"transcript_id": tid, "status": "completed"}
            assert receiver.post(body, **{HEADER: WEBHOOK_SECRET}).status_code == 200
        wait_until(lambda: not pending_notifications(str(out)), "the duplicates acknowledged")
        assert server.stats()["requests_by_route"]["transcript_get"] == after["transcript_get"]
    finally:
        receiver.stop()
    rows = _transcripts(out)
    assert sorted(r["status"] for r in rows) == ["completed"] * CLIPS  # one row each
    assert sorted(r["media_id"] for r in rows) == [f"clip-{i}.wav" for i in range(CLIPS)]
    with Ledger.open(str(out), run_id="check", read_only=True) as ledger:
        assert len(ledger.states.keys_with(Status.completed)) == CLIPS
        assert ledger.states.keys_with(Status.submitted) == []
    log = receiver.log.read_text()
    assert WEBHOOK_SECRET not in log and LOCAL_KEY not in log and "Traceback" not in log, log


def test_a_collector_killed_between_its_rows_and_the_ledger_is_finished_by_the_next_one(
    tmp_path: Path, server: ServeLocal
) -> None:
    media = _media(tmp_path)
    out = tmp_path / "out"
    endpoint = {"ASSEMBLYAI_BASE_URL": server.base_url, "ASSEMBLYAI_API_KEY": LOCAL_KEY}
    port = ["--port", str(free_port())]  # the restarted receiver gets AssemblyAI's retries
    armed = {"VOXLAKE_TEST_HOOKS": "1", "VOXLAKE_CRASHPOINT": "write"}
    crashing = Receiver(
        tmp_path / "crashing.log", str(out), "--collect", *port, **endpoint, **armed
    )
    try:
        detached, _ = _run(server, media, out, *_hooked(crashing), "--detach")
        assert detached.returncode == 0, detached.stdout + detached.stderr
        # Its first round published rows and stopped before telling the ledger: kill -9 there.
        wait_until(lambda: process_state(crashing.proc.pid) == "T", "the collector at 'write'")
    finally:
        crashing.proc.kill()
        crashing.stop()
    assert (out / "transcripts").is_dir()  # rows of the round, published
    with Ledger.open(str(out), run_id="check", read_only=True) as ledger:
        assert len(ledger.states.keys_with(Status.submitted)) == CLIPS  # none committed
        assert ledger.states.keys_with(Status.completed) == []

    receiver = Receiver(tmp_path / "receiver.log", str(out), "--collect", *port, **endpoint)
    try:

        def finished() -> bool:
            with Ledger.open(str(out), run_id="check", read_only=True) as ledger:
                done = len(ledger.states.keys_with(Status.completed)) == CLIPS
            return done and not pending_notifications(str(out))

        wait_until(finished, "the restarted collector to collect every job")
    finally:
        receiver.stop()
    routes = server.stats()["requests_by_route"]
    assert routes["transcript_create"] == CLIPS, routes  # paid once: the collector never submits
    check_invariants(out)  # the current views show each item once, completed
    current = connect(str(out)).sql("SELECT media_id, status FROM transcripts_current").fetchall()
    assert sorted(current) == [(f"clip-{i}.wav", "completed") for i in range(CLIPS)]


def _ledger_transcript_ids(out: Path) -> list[str]:
    with Ledger.open(str(out), run_id="check", read_only=True) as ledger:
        events = ledger.read_events(["status", "transcript_id"]).to_pylist()
    return sorted({e["transcript_id"] for e in events if e["status"] == "completed"})


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ([], "--webhook-auth-header-value-env"),
        (["--webhook-auth-header-value-env", "HOOK_AUTH"], "HOOK_AUTH is not set"),
    ],
)
def test_a_webhook_url_without_its_secret_is_refused_before_anything_is_sent(
    tmp_path: Path, args: list[str], said: str
) -> None:
    media = tmp_path / "clip.wav"
    write_synth_wav(media, "never sent", 1.0)
    out = tmp_path / "out"
    done = voxlake_run(
        [str(media), "--output", str(out), "--webhook-url", "http://127.0.0.1:9/x", *args],
        clean_env(),
        timeout_s=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not out.exists()
