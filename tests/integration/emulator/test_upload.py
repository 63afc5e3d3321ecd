"""POST /v2/upload: framing variants, size limit, streaming to disk, expiry, access."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.emulator.helpers import (
    MODELS,
    SCRIPT,
    client,
    serve_local_process,
    submit,
    upload,
)
from tests.support.secrets import KEY_A
from voxlake.emulator import LocalServer
from voxlake.emulator.synth import iter_synth_wav, synth_wav


def _stored(srv: LocalServer, url: str) -> Path:
    assert srv.state is not None
    uid = url.rsplit("/", 1)[1]
    return srv.state.uploads._uploads[uid].path


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "audio/wav"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_upload_framings(local_server: LocalServer, framing: str, content_type: str | None) -> None:
    data = synth_wav(SCRIPT, 3.0, seed=7)
    headers = {"content-type": content_type} if content_type else {}
    with client(local_server) as c:
        if framing == "chunked":
            content: bytes | Iterator[bytes] = iter_synth_wav(SCRIPT, 3.0, seed=7)
        else:
            content = data
        req = c.build_request("POST", "/v2/upload", content=content, headers=headers)
        if framing == "chunked":
            assert req.headers.get("transfer-encoding") == "chunked"
        else:
            assert req.headers["content-length"] == str(len(data))
        if content_type is None:
            assert "content-type" not in req.headers
        r = c.send(req)
        assert r.status_code == 200
        url = r.json()["upload_url"]
        assert re.fullmatch(rf"{local_server.base_url}/upload/[0-9a-f-]{{36}}", url)
        assert _stored(local_server, url).read_bytes() == data
        t = submit(c, url)
        local_server.wait_for_transcript(t["id"])
        assert c.get(f"/v2/transcript/{t['id']}").json()["text"] == SCRIPT


def test_upload_size_limit(make_server: Callable[..., LocalServer]) -> None:
    srv = make_server(max_upload_bytes=100_000)
    with client(srv) as c:
        assert c.post("/v2/upload", content=b"\0" * 100_000).status_code == 200
        too_big = b"\0" * 100_001
        r = c.post("/v2/upload", content=too_big)  # declared by Content-Length
        assert r.status_code == 400 and "maximum size" in r.json()["error"]
        r = c.post("/v2/upload", content=iter([too_big[:60_000], too_big[60_000:]]))  # chunked
        assert r.status_code == 400
    assert srv.state is not None
    files = list((srv.state.root / "uploads").iterdir())
    assert len(files) == 1  # the rejected partial upload was removed
    assert srv.stats()["upload_bytes"] == 100_000


def test_upload_urls_are_not_downloadable(local_server: LocalServer) -> None:
    with client(local_server) as c:
        url = upload(c, synth_wav("Private.", 1.0))
        r = httpx.get(url)
    assert r.status_code == 403 and b"AccessDenied" in r.content and b"RIFF" not in r.content


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_upload_expiry_with_injected_clock(make_server: Callable[..., LocalServer]) -> None:
    clock = FakeClock()
    srv = make_server(upload_ttl_s=60.0, clock=clock)
    with client(srv) as c:
        url = upload(c, synth_wav("Expiring.", 1.0))
        kept = upload(c, synth_wav("Used in time.", 1.0))
        used = submit(c, kept)
        srv.wait_for_transcript(used["id"])
        clock.now += 61
        assert srv.sweep_uploads() == 2
        assert not _stored(srv, url).exists()
        t = submit(c, url)
        assert srv.wait_for_transcript(t["id"]) == "error"
        body = c.get(f"/v2/transcript/{t['id']}").json()
        done = c.get(f"/v2/transcript/{used['id']}").json()
    assert body["error"] == (
        f"Download error, unable to download {url}. "
        "Please make sure the file exists and is accessible from the internet."
    )
    assert done["status"] == "completed" and done["text"] == "Used in time."


def test_delete_removes_the_uploaded_file(local_server: LocalServer) -> None:
    with client(local_server) as c:
        url = upload(c, synth_wav("Delete me.", 1.0))
        t = submit(c, url)
        local_server.wait_for_transcript(t["id"])
        path = _stored(local_server, url)
        assert path.exists()
        assert c.delete(f"/v2/transcript/{t['id']}").status_code == 200
        assert not path.exists()
        r = c.post("/v2/transcript", json={"audio_url": url, "speech_models": MODELS})
        assert local_server.wait_for_transcript(r.json()["id"]) == "error"


def _vm_hwm_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc VmHWM")
def test_large_upload_streams_to_disk_in_a_subprocess(tmp_path: Path) -> None:
    """200 MB through a generator: the server's *peak* RSS (VmHWM) must barely move."""
    with (
        serve_local_process(tmp_path) as (pid, base),
        httpx.Client(base_url=base, headers={"authorization": KEY_A}, timeout=60) as c,
    ):
        assert c.post("/v2/upload", content=b"warm-up").status_code == 200
        before = _vm_hwm_kib(pid)
        chunk = b"\x01" * (1 << 20)
        total = 200 * len(chunk)
        r = c.post("/v2/upload", content=(chunk for _ in range(200)))
        assert r.status_code == 200
        after = _vm_hwm_kib(pid)
        stats = c.get("/_voxlake/stats").json()
    uid = r.json()["upload_url"].rsplit("/", 1)[1]
    assert (tmp_path / "uploads" / f"{uid}.upload").stat().st_size == total
    assert stats["upload_bytes"] == total + len(b"warm-up")
    growth_mib = (after - before) / 1024
    print(f"peak RSS growth {growth_mib:.1f} MiB")
    assert growth_mib < 40, f"peak RSS grew by {growth_mib:.0f} MiB for a 200 MiB upload"
