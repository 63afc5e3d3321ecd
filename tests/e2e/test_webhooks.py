"""The webhook receiver, `voxlake webhooks`, as a real process; the local server delivers to it.

Each job is submitted to the suite's local server with ``webhook_url`` pointing at the receiver
on 127.0.0.1 and the auth header; the server POSTs ``{transcript_id, status}`` when the job ends
(voxlake/emulator/webhooks.py) and counts deliveries, so a test waits on those counters, then
reads what the receiver recorded under the output root (voxlake.webhooks).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.emulator.helpers import client, submit, upload
from tests.support.clikit import REPO, clean_env, wait_until
from tests.support.secrets import WEBHOOK_SECRET
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import synth_wav
from voxlake.webhooks import NOTIFICATIONS_DIR, acknowledge, pending_notifications

HEADER = "X-Hook-Auth"


class Receiver:
    """`voxlake webhooks OUTPUT --port 0` with the secret in the environment variable HOOK_AUTH
    (and ``env`` besides: the AssemblyAI endpoint of a collecting receiver)."""

    def __init__(self, log: Path, output: str, *args: str, **env: str) -> None:
        self.log = log
        self.output = output
        cmd = [sys.executable, "-m", "voxlake.cli", "webhooks", output, "--port", "0"]
        cmd += ["--auth-header-name", HEADER, "--auth-header-value-env", "HOOK_AUTH", *args]
        self._log_fh = log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=clean_env(**{**env, "HOOK_AUTH": WEBHOOK_SECRET}),
        )
        self.url: str = wait_until(self._address, "the receiver to print its URL")

    def _address(self) -> str | None:
        found = re.search(r"voxlake webhook receiver on (http://\S+)", self.log.read_text())
        if found is None and self.proc.poll() is not None:
            raise AssertionError(f"voxlake webhooks exited: {self.log.read_text()}")
        return found.group(1) if found else None

    def post(self, body: object, **headers: str) -> httpx.Response:
        return httpx.post(self.url, json=body, headers=headers, timeout=30)

    def stop(self) -> int:
        """Ctrl-C, as a terminal sends it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self._log_fh.close()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    tmp = tmp_path_factory.mktemp("webhooks")
    rec = Receiver(tmp / "receiver.log", str(tmp / "out"))
    yield rec
    rec.stop()


def hooked(rec: Receiver, value: str = WEBHOOK_SECRET) -> dict[str, Any]:
    """The submit parameters that send the job's notification to ``rec``."""
    return {
        "webhook_url": rec.url,
        "webhook_auth_header_name": HEADER,
        "webhook_auth_header_value": value,
    }


def recorded(output: str) -> dict[str, Any]:
    return {n.transcript_id: n for n in pending_notifications(output)}


def delivered(server: LocalServer, submit_jobs: Callable[[], list[str]], key: str) -> list[str]:
    """Submit the jobs, then wait until the server counted one more ``key`` per job."""
    before = server.stats()[key]
    ids = submit_jobs()
    server.wait_until(lambda s: s[key] >= before + len(ids), timeout=60)
    return ids


def test_notifications_delivered_by_the_local_server_are_recorded_once(
    local_server: LocalServer, receiver: Receiver
) -> None:
    with client(local_server) as c:

        def jobs() -> list[str]:
            good = submit(c, upload(c, synth_wav("Hooked.", 1.0)), **hooked(receiver))
            bad = submit(c, upload(c, b"not audio"), **hooked(receiver))
            return [good["id"], bad["id"]]

        good, bad = delivered(local_server, jobs, "webhooks_delivered")
        # No wait here: the server counts a delivery once the receiver answered 200, and the
        # receiver answers only once the notification is durable.
        first = recorded(receiver.output)
        assert first[good].status == "completed" and first[bad].status == "error"
        assert first[good].deliveries == 1
        assert c.get(f"/v2/transcript/{good}").json()["webhook_status_code"] == 200

    # AssemblyAI sends again when it did not get our 200 in time: the same notification twice.
    body = {"transcript_id": good, "status": "completed"}
    again = receiver.post(body, **{HEADER: WEBHOOK_SECRET})
    assert again.status_code == 200, again.text
    notes = recorded(receiver.output)
    pending = [n.transcript_id for n in pending_notifications(receiver.output)]
    assert pending.count(good) == 1  # one pending notification, not two
    assert notes[good].deliveries == 2
    assert notes[good].first_received_at == first[good].first_received_at  # kept
    assert notes[good].last_received_at >= first[good].last_received_at

    acknowledge(receiver.output, [good, bad])
    assert good not in recorded(receiver.output) and bad not in recorded(receiver.output)
    log = receiver.log.read_text()
    assert WEBHOOK_SECRET not in log and "Traceback" not in log


def test_a_forged_notification_is_refused_and_nothing_is_recorded(
    local_server: LocalServer, receiver: Receiver
) -> None:
    forged_value = "forged-value-9Zq1"
    with client(local_server) as c:

        def jobs() -> list[str]:
            job = submit(c, upload(c, synth_wav("Forged.", 1.0)), **hooked(receiver, forged_value))
            return [job["id"]]

        # The server's own delivery, with the wrong value: refused, and a 4xx is not retried.
        (forged,) = delivered(local_server, jobs, "webhooks_failed")
        assert c.get(f"/v2/transcript/{forged}").json()["webhook_status_code"] == 401
    body = {"transcript_id": forged, "status": "completed"}
    assert receiver.post(body).status_code == 401  # no header
    assert receiver.post(body, **{HEADER: forged_value}).status_code == 401
    assert receiver.post(body, **{HEADER: WEBHOOK_SECRET[:-1]}).status_code == 401
    assert receiver.post(body, **{"X-Other": WEBHOOK_SECRET}).status_code == 401
    twice = [(HEADER, WEBHOOK_SECRET), (HEADER, forged_value)]  # which one would count?
    assert httpx.post(receiver.url, json=body, headers=twice, timeout=30).status_code == 401
    assert forged not in recorded(receiver.output)
    assert not (Path(receiver.output) / NOTIFICATIONS_DIR / f"{forged}.json").exists()
    log = receiver.log.read_text()
    assert "webhook refused (401)" in log
    assert forged_value not in log and WEBHOOK_SECRET not in log


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", 400),
        (b'{"transcript_id": "9ea68fd3-f953-42c1-9742-976c447fb463"}', 400),
        (b'{"transcript_id": "9ea68fd3-f953-42c1-9742-976c447fb463", "status": "queued"}', 400),
        (b'{"transcript_id": "a", "status": "completed", "extra": 1}', 400),
        (b'{"transcript_id": "../../escape", "status": "completed"}', 400),
        (b'{"transcript_id": ".hidden", "status": "completed"}', 400),
        (b'{"transcript_id": "' + b"a" * 20_000 + b'", "status": "completed"}', 413),
    ],
)
def test_what_is_not_a_notification_is_refused(receiver: Receiver, body: bytes, code: int) -> None:
    before = recorded(receiver.output)
    headers = {HEADER: WEBHOOK_SECRET, "Content-Type": "application/json"}
    response = httpx.post(receiver.url, content=body, headers=headers, timeout=30)
    assert response.status_code == code, response.text
    assert recorded(receiver.output) == before
    assert not (Path(receiver.output).parent / "escape.json").exists()


def test_other_methods_get_405(receiver: Receiver) -> None:
    response = httpx.get(receiver.url, headers={HEADER: WEBHOOK_SECRET}, timeout=30)
    assert response.status_code == 405


def test_it_records_on_s3(
    local_server: LocalServer, make_bucket: Callable[[str], str], tmp_path: Path
) -> None:
    output = f"s3://{make_bucket('hooks')}/lake"
    rec = Receiver(tmp_path / "receiver.log", output)
    try:
        with client(local_server) as c:

            def jobs() -> list[str]:
                return [submit(c, upload(c, synth_wav("On S3.", 1.0)), **hooked(rec))["id"]]

            (job,) = delivered(local_server, jobs, "webhooks_delivered")
        assert list(recorded(output)) == [job]
        acknowledge(output, [job])
        assert recorded(output) == {}
    finally:
        assert rec.stop() == 130


def test_unwritable_output_answers_503_so_it_is_sent_again_and_ctrl_c_exits_130(
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "out" / "_webhooks"
    blocked.parent.mkdir()
    blocked.write_text("a file where the notifications folder goes")  # as a full disk would
    rec = Receiver(tmp_path / "receiver.log", str(tmp_path / "out"))
    body = {"transcript_id": "9ea68fd3-f953-42c1-9742-976c447fb463", "status": "completed"}
    response = rec.post(body, **{HEADER: WEBHOOK_SECRET})
    assert response.status_code == 503, response.text  # AssemblyAI retries a 5xx

    assert rec.stop() == 130
    log = rec.log.read_text()
    assert "webhook for 9ea68fd3-f953-42c1-9742-976c447fb463 not recorded: recording" in log
    assert log.splitlines()[-1] == "Interrupted: the webhook receiver stopped."
    assert "Traceback" not in log


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "error: HOOK_AUTH is not set: export the webhook auth header value"),
        ([], {"HOOK_AUTH": " "}, "error: webhook auth (HOOK_AUTH): the auth header value is empty"),
        (
            ["--auth-header-name", "X Bad"],
            {"HOOK_AUTH": WEBHOOK_SECRET},
            "error: webhook auth (HOOK_AUTH): 'X Bad' is not an HTTP header name",
        ),
        # The collector's requests need a key (clean_env has no ASSEMBLYAI_*).
        (["--collect"], {"HOOK_AUTH": WEBHOOK_SECRET}, "error: No AssemblyAI API key"),
    ],
)
def test_bad_auth_settings_end_it_before_it_listens(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    cmd = [sys.executable, "-m", "voxlake.cli", "webhooks", str(tmp_path / "out")]
    cmd += ["--auth-header-value-env", "HOOK_AUTH", *args]
    done = subprocess.run(
        cmd, cwd=REPO, env=clean_env(**env), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert "Traceback" not in done.stderr and "receiver on" not in done.stderr
    assert not (tmp_path / "out").exists()
