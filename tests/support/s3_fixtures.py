"""S3 for the suite: moto's standalone server on 127.0.0.1, and a fault-injecting S3 proxy.

Registered from conftest.py (``pytest_plugins``). The moto server is a separate process
(moto's ``ThreadedMotoServer`` in a child Python) speaking the real S3 HTTP API; s3fs reaches
it through ``AWS_ENDPOINT_URL_S3``, which botocore honours, or an explicit ``endpoint_url``. Its
memory (moto keeps objects in RAM) and its access log stay out of the test process.

The whole session runs with fake, distinctive AWS credentials (tests/support/secrets.py) and with
the instance-metadata lookup and the user's ~/.aws files disabled, so no test can ever reach AWS.
"""

from __future__ import annotations

import http.client
import http.server
import os
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import pytest

from tests.support.secrets import AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN

# moto's server in its own process, bound to a port the kernel picks (so parallel test workers
# never race for one), listening before it prints that port; it exits when stdin closes.
_MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""


def _read_line(stream: IO[str], timeout_s: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stream.readline()), daemon=True).start()
    return lines.get(timeout=timeout_s)


@dataclass
class MotoS3:
    endpoint_url: str


@pytest.fixture(scope="session", autouse=True)
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto_server for the whole session; the AWS environment points every S3 client at it."""
    env_overrides = {
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": AWS_SESSION_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path_factory.mktemp("aws") / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path_factory.mktemp("aws") / "credentials"),
    }
    removed = {k: os.environ.pop(k) for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL") if k in os.environ}
    saved = {k: os.environ.get(k) for k in [*env_overrides, "AWS_ENDPOINT_URL_S3"]}
    os.environ.update(env_overrides)
    proc = subprocess.Popen(
        [sys.executable, "-c", _MOTO],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # moto's access log
        text=True,
    )
    try:
        assert proc.stdout is not None
        try:
            port = int(_read_line(proc.stdout, timeout_s=180))
        except (queue.Empty, ValueError):
            raise RuntimeError(f"moto's server did not start (exit status {proc.poll()})") from None
        endpoint = f"http://127.0.0.1:{port}"
        os.environ["AWS_ENDPOINT_URL_S3"] = endpoint
        yield MotoS3(endpoint)
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.environ.update(removed)


@pytest.fixture
def s3fs_fs(moto_s3: MotoS3):  # type: ignore[no-untyped-def]
    from voxlake.storage import s3_filesystem

    return s3_filesystem()


@pytest.fixture
def make_bucket(s3fs_fs) -> Callable[[str], str]:  # type: ignore[no-untyped-def]
    """``make_bucket("lake")`` creates a fresh bucket named ``lake-<random>``."""

    def make(prefix: str = "bkt") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        s3fs_fs.mkdir(name)
        return name

    return make


# --- fault proxy ------------------------------------------------------------------------------


@dataclass
class FaultRule:
    """Answer requests whose path contains ``key`` (and method in ``methods``) with an S3 error
    ``times`` times (-1: always), then pass them through."""

    key: str
    status: int
    code: str
    message: str
    methods: tuple[str, ...] = ("GET", "HEAD")
    times: int = -1
    query_contains: str | None = None
    hits: int = 0


@dataclass
class S3FaultProxy:
    endpoint_url: str
    rules: list[FaultRule] = field(default_factory=list)

    def add(self, rule: FaultRule) -> FaultRule:
        self.rules.append(rule)
        return rule


@pytest.fixture
def s3_fault_proxy(moto_s3: MotoS3) -> Iterator[S3FaultProxy]:
    """An HTTP proxy in front of moto that injects S3 error responses (403 AccessDenied, 503
    SlowDown) for chosen keys: moto itself only denies access when IAM enforcement is switched
    on for the whole server, and never throttles."""
    upstream = moto_s3.endpoint_url.removeprefix("http://")
    proxy = S3FaultProxy("")
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # the S3 access log: off
            return

        def _fault(self) -> FaultRule | None:
            from urllib.parse import unquote

            path = unquote(self.path)
            with lock:
                for rule in proxy.rules:
                    if rule.key in path and self.command in rule.methods:
                        if rule.query_contains and rule.query_contains not in self.path:
                            continue
                        if rule.times == -1 or rule.hits < rule.times:
                            rule.hits += 1
                            return rule
            return None

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            rule = self._fault()
            if rule is not None:
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?><Error>'
                    f"<Code>{rule.code}</Code><Message>{rule.message}</Message>"
                    "<RequestId>voxlake-test</RequestId></Error>"
                ).encode()
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header(
                    "Content-Length", "0" if self.command == "HEAD" else str(len(payload))
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                return
            conn = http.client.HTTPConnection(upstream, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            length = resp.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
