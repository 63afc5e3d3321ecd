"""Upload: local pre-checks before any request, streaming headers, replay on retry."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from tests.support.secrets import KEY_A
from voxlake.client import MAX_UPLOAD_BYTES, UPLOAD_CHUNK_SIZE, AssemblyAIClient
from voxlake.errors import (
    EmptyMediaError,
    MediaReadError,
    MediaTooLargeError,
    NetworkError,
    NotMediaError,
    ServerError,
)
from voxlake.media import sniff_non_media
from voxlake.retry import RetryPolicy

BASE = "https://api.test"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class UploadSink:
    """Records each upload request's headers and body; can fail the first N attempts."""

    def __init__(self, fail_first: int = 0, failure: Exception | int = 503) -> None:
        self.fail_first = fail_first
        self.failure = failure
        self.requests: list[tuple[httpx.Headers, bytes]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.headers, request.content))
        if len(self.requests) <= self.fail_first:
            if isinstance(self.failure, Exception):
                raise self.failure
            return httpx.Response(self.failure, text="<html>busy</html>")
        return httpx.Response(200, json={"upload_url": f"https://cdn/up/{len(self.requests)}"})

    def client(self, attempts: int = 3) -> AssemblyAIClient:
        async def no_sleep(_s: float) -> None:
            return None

        return AssemblyAIClient(
            api_key=KEY_A,
            base_url=BASE,
            transport=httpx.MockTransport(self),
            retry=RetryPolicy(max_attempts=attempts, sleep=no_sleep),
        )


class NonSeekable(io.RawIOBase):
    """A pipe-like reader: no seek, no fileno, returns short reads."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.anyio
async def test_path_upload_sends_content_length_and_octet_stream(tmp_path: Path) -> None:
    media = tmp_path / "talk.wav"
    payload = WAV + b"\x00" * (3 * UPLOAD_CHUNK_SIZE + 17)
    media.write_bytes(payload)
    sink = UploadSink()
    async with sink.client() as client:
        uploaded = await client.upload(media)
        uploaded_str = await client.upload(str(media))
    assert uploaded.upload_url.startswith("https://cdn/up/")
    assert uploaded_str.upload_url
    headers, body = sink.requests[0]
    assert body == payload
    assert headers["content-length"] == str(len(payload))
    assert "transfer-encoding" not in headers
    assert headers["content-type"] == "application/octet-stream"
    assert headers["authorization"] == KEY_A  # raw key, no "Bearer"
    assert "voxlake" in headers["user-agent"]


@pytest.mark.anyio
async def test_file_object_from_current_position(tmp_path: Path) -> None:
    media = tmp_path / "x.bin"
    media.write_bytes(b"JUNKJUNK" + WAV)
    sink = UploadSink()
    with media.open("rb") as fh:
        fh.seek(8)  # the caller positioned the stream: upload from here
        async with sink.client() as client:
            await client.upload(fh)
        assert not fh.closed  # we don't close what we didn't open
    assert sink.requests[0][1] == WAV
    assert sink.requests[0][0]["content-length"] == str(len(WAV))


@pytest.mark.anyio
async def test_non_seekable_stream_is_chunked_and_not_replayed_after_start() -> None:
    sink = UploadSink(fail_first=1, failure=httpx.ReadError("reset"))
    async with sink.client() as client:
        with pytest.raises(NetworkError) as info:
            await client.upload(NonSeekable(WAV * 10))
    assert len(sink.requests) == 1  # the body was consumed: cannot retry
    headers, body = sink.requests[0]
    assert headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in headers
    assert body == WAV * 10  # the sniffed head was streamed first, nothing lost
    assert info.value.transient  # a caller that can reopen the source may retry


@pytest.mark.anyio
async def test_non_seekable_stream_with_explicit_size_sends_content_length() -> None:
    sink = UploadSink()
    async with sink.client() as client:
        await client.upload(NonSeekable(WAV), size=len(WAV))
    assert sink.requests[0][0]["content-length"] == str(len(WAV))


@pytest.mark.anyio
async def test_seekable_source_is_rewound_for_each_retry(tmp_path: Path) -> None:
    media = tmp_path / "talk.wav"
    payload = WAV + b"\x01" * (2 * UPLOAD_CHUNK_SIZE)
    media.write_bytes(payload)
    sink = UploadSink(fail_first=2, failure=503)
    async with sink.client(attempts=3) as client:
        await client.upload(media)
    assert len(sink.requests) == 3
    assert all(body == payload for _, body in sink.requests)


class RefuseFirstConnection(httpx.AsyncBaseTransport):
    """Fails the first request as a refused connection, before reading any of its body.

    (``MockTransport`` reads every request body before calling its handler.)
    """

    def __init__(self) -> None:
        self.bodies: list[bytes | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.bodies:
            self.bodies.append(None)
            raise httpx.ConnectError("connection refused", request=request)
        self.bodies.append(await request.aread())
        return httpx.Response(200, json={"upload_url": "https://cdn/up/1"})


@pytest.mark.anyio
async def test_retry_before_any_body_byte_is_sent_sends_the_file_once(tmp_path: Path) -> None:
    # The pre-check has already read the first chunk; the retry must not send it twice.
    media = tmp_path / "talk.wav"
    payload = WAV + b"\x02" * (UPLOAD_CHUNK_SIZE + 10)
    media.write_bytes(payload)
    transport = RefuseFirstConnection()

    async def no_sleep(_s: float) -> None:
        return None

    retry = RetryPolicy(max_attempts=2, sleep=no_sleep)
    async with AssemblyAIClient(
        api_key=KEY_A, base_url=BASE, transport=transport, retry=retry
    ) as client:
        await client.upload(media)
    assert transport.bodies == [None, payload]


@pytest.mark.anyio
async def test_upload_retries_are_bounded(tmp_path: Path) -> None:
    media = tmp_path / "talk.wav"
    media.write_bytes(WAV)
    sink = UploadSink(fail_first=99, failure=500)
    async with sink.client(attempts=3) as client:
        with pytest.raises(ServerError) as info:
            await client.upload(media)
    assert len(sink.requests) == 3 and info.value.attempts == 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "error", "phrase"),
    [
        (b"", EmptyMediaError, "empty"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", NotMediaError, "HTML"),
        (b'{"error": "AccessDenied"}', NotMediaError, "JSON"),
        (b"hello, this is a transcript, not audio\n" * 5, NotMediaError, "plain text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", NotMediaError, "PDF"),
        (b"PK\x03\x04\x14\x00\x00\x00", NotMediaError, "ZIP"),
        (b"\x7fELF\x02\x01\x01\x00" + bytes(100), NotMediaError, "ELF"),
    ],
)
async def test_prechecks_reject_before_any_request(
    tmp_path: Path, content: bytes, error: type[Exception], phrase: str
) -> None:
    media = tmp_path / "suspect.mp3"
    media.write_bytes(content)
    sink = UploadSink()
    async with sink.client() as client:
        with pytest.raises(error) as info:
            await client.upload(media)
        with pytest.raises(error):
            await client.upload(NonSeekable(content))  # unknown size: sniffed the same way
    assert sink.requests == []
    assert str(media) in str(info.value) and phrase in str(info.value)
    assert "nothing was uploaded" in str(info.value)


@pytest.mark.anyio
async def test_too_large_rejected_from_size_without_reading(tmp_path: Path) -> None:
    media = tmp_path / "huge.wav"
    with media.open("wb") as fh:  # sparse: costs no disk
        fh.write(WAV)
        fh.truncate(MAX_UPLOAD_BYTES + 1)
    sink = UploadSink()
    async with sink.client() as client:
        with pytest.raises(MediaTooLargeError) as info:
            await client.upload(media)
        with pytest.raises(MediaTooLargeError):
            await client.upload(NonSeekable(WAV), size=MAX_UPLOAD_BYTES + 1)
    assert sink.requests == []
    assert "2,200,000,000" in str(info.value)


@pytest.mark.anyio
async def test_missing_file_is_a_media_error(tmp_path: Path) -> None:
    async with UploadSink().client() as client:
        with pytest.raises(MediaReadError) as info:
            await client.upload(tmp_path / "nope.wav")
    assert "nope.wav" in str(info.value)


@pytest.mark.parametrize(
    "head",
    [
        WAV,
        b"ID3\x04\x00\x00\x00\x00\x00\x00",
        b"\xff\xfb\x90\x64" + bytes(64),  # bare MP3 frame
        b"\x00\x00\x00\x20ftypisom\x00\x00",  # MP4
        b"OggS\x00\x02",
        b"fLaC\x00\x00\x00\x22",
        b"\x1a\x45\xdf\xa3\x01\x00",  # WebM
        bytes(4096),  # unknown binary: let the server decide
    ],
)
def test_media_signatures_pass_the_sniffer(head: bytes) -> None:
    assert sniff_non_media(head) is None
