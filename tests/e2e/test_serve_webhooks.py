"""`voxlake serve --webhooks OUTPUT`: the webhook receiver beside the worker and Prefect server.

The receiver starts first, before serve waits for its Prefect API, so these tests point serve at
an API address where nothing listens: serve waits for it (up to its start-up deadline) while the
receiver answers, and the tests stop it with Ctrl-C once they have what they need. The Prefect
side of serve is tested in tests/e2e/test_serve.py; a Prefect server of their own would cost
10-30 s each and show nothing more here.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_webhooks import HEADER
from tests.support.clikit import wait_until
from tests.support.prefect_server import clean_env, free_port
from tests.support.secrets import WEBHOOK_SECRET
from voxlake.webhooks import pending_notifications


class Serving:
    """`voxlake serve --no-worker ARGS` with the Prefect API at an address nobody answers."""

    def __init__(self, tmp: Path, *args: str, **env: str) -> None:
        self.log = tmp / "serve.log"
        dead_api = f"http://127.0.0.1:{free_port()}/api"
        cmd = [sys.executable, "-m", "voxlake.cli", "serve", "--no-worker", *args]
        self._log_fh = self.log.open("w")
        self.proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=clean_env(tmp / "client-home", PREFECT_API_URL=dead_api, **env),
        )

    def printed(self, pattern: str) -> str | None:
        found = re.search(pattern, self.log.read_text())
        if found is None and self.proc.poll() is not None:
            raise AssertionError(f"voxlake serve exited: {self.log.read_text()}")
        return found.group(1) if found else None

    def interrupt(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=120)
        finally:
            self._log_fh.close()


def _hook_args(out: Path, port: int) -> list[str]:
    return [
        "--webhooks",
        str(out),
        "--webhook-port",
        str(port),
        "--webhook-auth-header-name",
        HEADER,
        "--webhook-auth-header-value-env",
        "HOOK_AUTH",
    ]


def test_serve_runs_the_receiver_records_notifications_and_refuses_forged_ones(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    port = free_port()
    serving = Serving(tmp_path, *_hook_args(out, port), HOOK_AUTH=WEBHOOK_SECRET)
    try:
        url = wait_until(
            lambda: serving.printed(r"[Ww]ebhook receiver on (http://\S+)"), "the receiver's URL"
        )
        assert url == f"http://127.0.0.1:{port}/voxlake/webhook"
        body = {"transcript_id": "b1c2d3e4-0000-4000-8000-00000000abcd", "status": "completed"}
        ok = httpx.post(url, json=body, headers={HEADER: WEBHOOK_SECRET}, timeout=30)
        assert ok.status_code == 200, ok.text
        forged_body = {"transcript_id": "f0f0f0f0-0000-4000-8000-00000000dead", "status": "error"}
        forged = httpx.post(url, json=forged_body, headers={HEADER: "forged-9Zq1"}, timeout=30)
        assert forged.status_code == 401, forged.text
        missing = httpx.post(url, json=forged_body, timeout=30)
        assert missing.status_code == 401, missing.text
        assert [n.transcript_id for n in pending_notifications(str(out))] == [body["transcript_id"]]
    finally:
        status = serving.interrupt()
    log = serving.log.read_text()
    assert status == 130, log
    assert "webhook refused (401)" in log  # the receiver's log lines show in serve's output
    assert WEBHOOK_SECRET not in log and "Traceback" not in log, log
    with pytest.raises(httpx.ConnectError):  # stopped with the rest
        httpx.post(url, json=body, headers={HEADER: WEBHOOK_SECRET}, timeout=5)


def test_serve_refuses_a_receiver_without_its_secret_before_starting_anything(
    tmp_path: Path,
) -> None:
    serving = Serving(tmp_path, *_hook_args(tmp_path / "out", free_port()))  # no HOOK_AUTH
    status = serving.proc.wait(timeout=120)
    serving.interrupt()
    log = serving.log.read_text()
    assert status == 2, log
    assert "HOOK_AUTH is not set" in log and "Traceback" not in log, log
    assert not (tmp_path / "out").exists()
