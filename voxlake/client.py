"""Async AssemblyAI v2 client: one small method per endpoint, typed results, streamed upload.

Every request goes through ``_send``: one :class:`~voxlake.retry.RetryPolicy` loop around one
attempt that translates httpx exceptions and error responses into :mod:`voxlake.errors` exactly
once. The API key is unwrapped only inside :class:`_ApiKeyAuth` when headers are built.

Usage::

    async with AssemblyAIClient(api_key=...) as client:
        uploaded = await client.upload(Path("talk.mp3"))
        job = await client.create_transcript(
            TranscriptParams(audio_url=uploaded.upload_url, speech_models=["universal-2"])
        )
        done = await wait_for_completion(client, job.id)   # voxlake.polling
"""

from __future__ import annotations

import io
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal, Self, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

import anyio.to_thread
import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from voxlake.config import ClientSettings
from voxlake.errors import (
    APIError,
    ConfigurationError,
    EmptyMediaError,
    InvalidResponseError,
    MediaReadError,
    MediaTooLargeError,
    NetworkError,
    NotMediaError,
    RateLimitError,
    RedactedAudioNotReadyError,
    RequestTimeoutError,
    ServerError,
    VoxlakeError,
    api_error_class,
)
from voxlake.media import SNIFF_BYTES, sniff_non_media
from voxlake.models import (
    ErrorBody,
    ParagraphsResponse,
    RedactedAudioResponse,
    SentencesResponse,
    Transcript,
    TranscriptList,
    TranscriptListItem,
    TranscriptParams,
    TranscriptStatus,
    UploadedFile,
    WordSearchResponse,
)
from voxlake.ratelimit import RequestBudget
from voxlake.redact import redact_url
from voxlake.retry import RetryPolicy, parse_retry_after

log = logging.getLogger("voxlake.client")

M = TypeVar("M", bound=BaseModel)
UploadSource = BinaryIO | Path | str | bytes | bytearray
SubtitleFormat = Literal["srt", "vtt"]

UPLOAD_CHUNK_SIZE = 1024 * 1024
MAX_UPLOAD_BYTES = 2_200_000_000
MAX_LIST_LIMIT = 200
_ERROR_TEXT_LIMIT = 300
_DEFAULT_RETRY = RetryPolicy()


class _ApiKeyAuth(httpx.Auth):
    """Adds ``Authorization: <key>`` (no Bearer) to each request; the only place it's unwrapped."""

    def __init__(self, api_key: SecretStr) -> None:
        self._api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._api_key.get_secret_value()
        yield request

    def __repr__(self) -> str:
        return "_ApiKeyAuth(api_key=SecretStr('**********'))"


class AssemblyAIClient:
    """Async client for the AssemblyAI v2 pre-recorded API. Use as ``async with``."""

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        api_key: str | SecretStr | None = None,
        base_url: str | None = None,
        region: Literal["us", "eu"] | None = None,
        retry: RetryPolicy | None = _DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_connections: int | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        if settings is None:
            overrides: dict[str, Any] = {"api_key": api_key, "base_url": base_url}
            if region is not None:
                overrides["region"] = region
            if max_connections is not None:
                overrides["max_connections"] = max_connections
            settings = ClientSettings(**overrides)
        elif any(v is not None for v in (api_key, base_url, region, max_connections)):
            raise ConfigurationError(
                "Pass either settings=... or api_key/base_url/region, not both"
            )
        self.settings = settings
        self.retry = retry if retry is not None else RetryPolicy.none()
        self._auth = _ApiKeyAuth(settings.api_key)
        # An injected budget (e.g. one shared through Prefect, voxlake.shared_budget) replaces
        # the settings' own.
        self._budget = budget
        if budget is None and settings.request_budget is not None:
            self._budget = RequestBudget(settings.request_budget, settings.request_budget_window_s)
        #: HTTP requests this client sent, retries included: what a run reports as its
        #: AssemblyAI requests (one client per run).
        self.requests_sent = 0
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            transport=transport,
            timeout=settings.timeout(),
            limits=settings.limits(),
            headers={"User-Agent": settings.user_agent},
            follow_redirects=False,
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def __repr__(self) -> str:
        return f"AssemblyAIClient(base_url={self.settings.base_url!r}, retry={self.retry!r})"

    def reserve_requests(self, n: int) -> None:
        """Keep request budget for ``n`` uploads/submits still to come (voxlake.ratelimit).

        Negative ``n`` gives back what will not be sent. No-op without a budget.
        """
        if self._budget is not None:
            self._budget.reserve(n)

    # --- endpoints ----------------------------------------------------------------------------

    async def upload(self, source: UploadSource, *, size: int | None = None) -> UploadedFile:
        """POST /v2/upload, streaming ``source`` in 1 MiB chunks in constant memory.

        ``source`` is a path, bytes, or any binary file-like object (local or e.g. s3fs).
        Pre-checks run before any request: empty, > 2.2 GB, obviously not media.
        A seekable source is rewound for each retry; a non-seekable one is retried only if the
        failure happened before any byte of the body was read.
        """
        body = _UploadBody.open(source, size)
        try:
            await body.precheck()
            response = await self._send(
                "POST",
                "/v2/upload",
                body=body,
                timeout=self.settings.upload_timeout_config(),
            )
        finally:
            body.close()
        return _parse(UploadedFile, response)

    async def create_transcript(self, params: TranscriptParams | Mapping[str, Any]) -> Transcript:
        """POST /v2/transcript. Not idempotent: retried only when no job can have been created."""
        if not isinstance(params, TranscriptParams):
            params = TranscriptParams.model_validate(dict(params))
        response = await self._send(
            "POST", "/v2/transcript", json=params.to_request(), idempotent=False
        )
        return _parse(Transcript, response)

    async def get_transcript(self, transcript_id: str) -> Transcript:
        response = await self._send("GET", _transcript_path(transcript_id), tid=transcript_id)
        return _parse(Transcript, response, transcript_id)

    async def delete_transcript(self, transcript_id: str) -> Transcript:
        response = await self._send("DELETE", _transcript_path(transcript_id), tid=transcript_id)
        return _parse(Transcript, response, transcript_id)

    async def list_transcripts(
        self,
        *,
        limit: int | None = None,
        status: TranscriptStatus | str | None = None,
        created_on: date | str | None = None,
        before_id: str | None = None,
        after_id: str | None = None,
    ) -> TranscriptList:
        """GET /v2/transcript: one page, newest first (``limit`` 1..200, server default 10)."""
        params: dict[str, str | int] = {}
        if limit is not None:
            if not 1 <= limit <= MAX_LIST_LIMIT:
                raise ValueError(f"limit must be within 1..{MAX_LIST_LIMIT}")
            params["limit"] = limit
        if status is not None:
            params["status"] = TranscriptStatus(status).value
        if created_on is not None:
            params["created_on"] = (
                created_on.isoformat() if isinstance(created_on, date) else created_on
            )
        if before_id is not None:
            params["before_id"] = before_id
        if after_id is not None:
            params["after_id"] = after_id
        response = await self._send("GET", "/v2/transcript", params=params)
        return _parse(TranscriptList, response)

    async def iter_transcript_pages(
        self,
        *,
        limit: int = MAX_LIST_LIMIT,
        status: TranscriptStatus | str | None = None,
        created_on: date | str | None = None,
        before_id: str | None = None,
        max_pages: int | None = None,
    ) -> AsyncIterator[TranscriptList]:
        """Pages from newest to oldest, following ``page_details.prev_url`` (``before_id``)."""
        pages = 0
        while max_pages is None or pages < max_pages:
            page = await self.list_transcripts(
                limit=limit, status=status, created_on=created_on, before_id=before_id
            )
            pages += 1
            yield page
            next_before = _older_page_cursor(page)
            if next_before is None or next_before == before_id:
                return
            before_id = next_before

    async def iter_transcripts(
        self,
        *,
        limit: int = MAX_LIST_LIMIT,
        status: TranscriptStatus | str | None = None,
        created_on: date | str | None = None,
        before_id: str | None = None,
        max_pages: int | None = None,
    ) -> AsyncIterator[TranscriptListItem]:
        """Every transcript of the account (last 90 days), newest first, page by page."""
        async for page in self.iter_transcript_pages(
            limit=limit,
            status=status,
            created_on=created_on,
            before_id=before_id,
            max_pages=max_pages,
        ):
            for item in page.transcripts:
                yield item

    async def get_sentences(self, transcript_id: str) -> SentencesResponse:
        path = f"{_transcript_path(transcript_id)}/sentences"
        return _parse(SentencesResponse, await self._send("GET", path, tid=transcript_id))

    async def get_paragraphs(self, transcript_id: str) -> ParagraphsResponse:
        path = f"{_transcript_path(transcript_id)}/paragraphs"
        return _parse(ParagraphsResponse, await self._send("GET", path, tid=transcript_id))

    async def get_subtitles(
        self,
        transcript_id: str,
        fmt: SubtitleFormat = "srt",
        *,
        chars_per_caption: int | None = None,
    ) -> str:
        """GET /v2/transcript/{id}/srt|vtt as text."""
        if fmt not in ("srt", "vtt"):
            raise ValueError(f"subtitle format must be 'srt' or 'vtt', not {fmt!r}")
        params = {} if chars_per_caption is None else {"chars_per_caption": chars_per_caption}
        path = f"{_transcript_path(transcript_id)}/{fmt}"
        response = await self._send("GET", path, params=params, tid=transcript_id)
        return response.text

    async def word_search(self, transcript_id: str, words: Sequence[str]) -> WordSearchResponse:
        if isinstance(words, str):  # a bare string would be searched letter by letter
            words = [words]
        path = f"{_transcript_path(transcript_id)}/word-search"
        params = {"words": ",".join(words)}
        response = await self._send("GET", path, params=params, tid=transcript_id)
        return _parse(WordSearchResponse, response, transcript_id)

    async def get_redacted_audio(self, transcript_id: str) -> RedactedAudioResponse:
        """GET /v2/transcript/{id}/redacted-audio. 202 -> RedactedAudioNotReadyError."""
        path = f"{_transcript_path(transcript_id)}/redacted-audio"
        response = await self._send("GET", path, tid=transcript_id)
        if response.status_code == 202:
            raise RedactedAudioNotReadyError(
                202, "redacted audio not ready", transcript_id, method="GET", path=path
            )
        return _parse(RedactedAudioResponse, response, transcript_id)

    # --- plumbing -----------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        tid: str | None = None,
        idempotent: bool = True,
        body: _UploadBody | None = None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """One retry loop around :meth:`_send_once`."""

        async def attempt(number: int) -> httpx.Response:
            headers: dict[str, str] = {}
            content = None
            if body is not None:
                await body.rewind(number)
                headers = body.headers()
                content = body.stream()
            return await self._send_once(
                method,
                path,
                tid=tid,
                params=params,
                json=json,
                content=content,
                headers=headers,
                timeout=timeout,
            )

        def can_retry(exc: VoxlakeError) -> bool:
            if body is not None and not body.replayable:
                return False
            return idempotent or _surely_not_processed(exc)

        return await self.retry.run(attempt, can_retry=can_retry, describe=f"{method} {path}")

    async def _send_once(
        self,
        method: str,
        path: str,
        *,
        tid: str | None,
        headers: dict[str, str],
        timeout: httpx.Timeout | None,
        **kwargs: Any,
    ) -> httpx.Response:
        url = f"{self.settings.base_url}{path}"
        if self._budget is not None:
            # Flow control, so this run never causes a 429; reads may wait for uploads/submits.
            await self._budget.acquire(deferrable=method == "GET")
        self.requests_sent += 1
        try:
            response = await self._http.request(
                method,
                url,
                headers=headers,
                auth=self._auth,
                timeout=timeout or self.settings.timeout(),
                **kwargs,
            )
        except httpx.HTTPError as exc:
            base_url = self.settings.base_url
            raise _translate_transport_error(exc, method, path, tid, base_url) from exc
        log.debug("%s %s -> HTTP %d", method, path, response.status_code)
        if response.status_code >= 300:
            raise _error_from_response(response, method, path, tid)
        return response


# --- request/response helpers -----------------------------------------------------------------


def _transcript_path(transcript_id: str) -> str:
    if not transcript_id:
        raise ValueError("transcript_id must be a non-empty string")
    return f"/v2/transcript/{quote(transcript_id, safe='')}"


def _parse(model: type[M], response: httpx.Response, transcript_id: str | None = None) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise InvalidResponseError(
            response.status_code,
            f"unexpected {model.__name__} body ({exc.error_count()} validation errors: "
            f"{exc.errors(include_input=False, include_url=False)[:3]})",
            transcript_id,
            method=response.request.method,
            path=response.request.url.path,
        ) from exc


def _error_message(response: httpx.Response) -> str:
    """AssemblyAI's ``error`` text, or a short description of a non-JSON body (503/504 HTML)."""
    try:
        return ErrorBody.model_validate_json(response.content).error
    except ValidationError:
        pass
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    text = response.text.strip()
    if not text:
        return response.reason_phrase or "(empty body)"
    if content_type == "text/html" or text.lstrip().startswith("<"):
        return f"{response.reason_phrase or 'error'} (non-JSON {content_type or 'HTML'} body)"
    return " ".join(text.split())[:_ERROR_TEXT_LIMIT]


def _error_from_response(
    response: httpx.Response, method: str, path: str, transcript_id: str | None
) -> APIError:
    message = _error_message(response)
    cls = api_error_class(response.status_code, message)
    retry_after = None
    if cls in (RateLimitError, ServerError):
        retry_after = parse_retry_after(response.headers.get("retry-after"))
    return cls(
        response.status_code,
        message,
        transcript_id,
        method=method,
        path=path,
        retry_after=retry_after,
    )


def _os_reason(exc: BaseException) -> str | None:
    """What the operating system said under an httpx error ("connection refused"), if known.

    httpx's own text for an async connect is "All connection attempts failed"; the errno is on
    the chain of causes.
    """
    seen: BaseException | None = exc
    reason = None
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            reason = seen.strerror if isinstance(seen, socket.gaierror) else os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return reason.lower() if reason else None


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _translate_transport_error(
    exc: httpx.HTTPError, method: str, path: str, transcript_id: str | None, base_url: str
) -> VoxlakeError:
    """The single place where httpx exceptions become voxlake errors.

    Each names the URL it tried: a wrong ``ASSEMBLYAI_BASE_URL`` is then plain to see.
    """
    base = redact_url(base_url)
    where = f"{method} {base}{path}"
    if transcript_id:
        where += f" [transcript {transcript_id}]"
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ConfigurationError(f"{where}: {detail}. Check base_url (http:// or https://)")
    sent = not isinstance(exc, _NOT_SENT)
    if isinstance(exc, httpx.ConnectError):
        return NetworkError(
            f"cannot reach AssemblyAI at {base} ({method} {path}: {_os_reason(exc) or detail}); "
            "check the network and the base URL (ASSEMBLYAI_BASE_URL or ASSEMBLYAI_REGION, or "
            "the credentials' base_url)",
            transcript_id=transcript_id,
            request_sent=sent,
        )
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(
            f"{where} timed out ({detail}). The network or AssemblyAI is slow; the client "
            "retries, raise the timeouts in ClientSettings if it keeps happening",
            transcript_id=transcript_id,
            request_sent=sent,
        )
    if isinstance(exc, httpx.LocalProtocolError):
        # Our side broke HTTP (e.g. the file changed size during upload): retrying won't help.
        return NetworkError(
            f"{where}: {detail}. Did the source change size during upload?",
            transcript_id=transcript_id,
            transient=False,
        )
    return NetworkError(
        f"{where}: {detail}. Network problem talking to AssemblyAI; the client retries",
        transcript_id=transcript_id,
        request_sent=sent,
    )


def _surely_not_processed(exc: VoxlakeError) -> bool:
    """For a non-idempotent POST: was the request certainly not acted on?

    A 429 is a refusal and a connect error never sent the request. Everything else is
    ambiguous, a 503 included: a proxy in front of the API may answer 503 after the job was
    created, so resubmitting blindly could bill twice (the pipeline looks the job up first).
    """
    if isinstance(exc, RateLimitError):
        return True
    return isinstance(exc, NetworkError) and not exc.request_sent


def _older_page_cursor(page: TranscriptList) -> str | None:
    """``before_id`` for the next (older) page, or None when this was the last page."""
    if not page.transcripts or len(page.transcripts) < page.page_details.limit:
        return None
    prev_url = page.page_details.prev_url
    if not prev_url:
        return None
    values = parse_qs(urlsplit(prev_url).query).get("before_id")
    return values[0] if values else page.transcripts[-1].id


# --- upload body ------------------------------------------------------------------------------


@dataclass
class _UploadBody:
    """A binary source streamed as the upload body, with pre-checks and replay on retry."""

    reader: BinaryIO
    name: str
    size: int | None
    owns_reader: bool
    start: int | None  # offset to rewind to, None when not seekable
    head: bytes = b""  # the first chunk, read by the pre-check and not yet streamed
    started: bool = False  # a body byte was read: a non-seekable source cannot be replayed

    @classmethod
    def open(cls, source: UploadSource, size: int | None) -> _UploadBody:
        if isinstance(source, bytes | bytearray):
            return cls._from_reader(io.BytesIO(source), "<bytes>", size, owns=True)
        if isinstance(source, str | Path):
            path = Path(source)
            try:
                reader = path.open("rb")
            except OSError as exc:
                raise MediaReadError(
                    f"Cannot open {path}: {exc.strerror or exc}. Check the path and permissions",
                    source=str(path),
                ) from exc
            return cls._from_reader(reader, str(path), size, owns=True)
        name = str(getattr(source, "name", None) or getattr(source, "path", None) or "<stream>")
        return cls._from_reader(source, name, size, owns=False)

    @classmethod
    def _from_reader(
        cls, reader: BinaryIO, name: str, size: int | None, *, owns: bool
    ) -> _UploadBody:
        start = _tell_if_seekable(reader)
        if size is None and start is not None:
            size = _remaining_size(reader, start)
        return cls(reader=reader, name=name, size=size, owns_reader=owns, start=start)

    @property
    def replayable(self) -> bool:
        return self.start is not None or not self.started

    async def precheck(self) -> None:
        if self.size is not None:
            self._check_size(self.size)
        # The first chunk is read once, sniffed, and streamed first: no seek back, and a file
        # of one chunk costs one worker-thread hop (they were most of an upload's CPU).
        self.head = await self._read(UPLOAD_CHUNK_SIZE)
        if not self.head:
            self._check_size(0)
        kind = sniff_non_media(self.head[:SNIFF_BYTES])
        if kind is not None:
            raise NotMediaError(
                f"{self.name} looks like {kind}, not audio or video; nothing was uploaded. "
                "Check the manifest entry points at the media file itself",
                source=self.name,
            )

    def _check_size(self, size: int) -> None:
        if size == 0:
            raise EmptyMediaError(
                f"{self.name} is empty (0 bytes); nothing was uploaded. Re-export or re-copy it",
                source=self.name,
            )
        if size > MAX_UPLOAD_BYTES:
            raise MediaTooLargeError(
                f"{self.name} is {size:,} bytes, over AssemblyAI's {MAX_UPLOAD_BYTES:,}-byte "
                "upload limit; nothing was uploaded. Split or re-encode it (e.g. to a compressed "
                "audio-only format), or host it and pass an audio_url instead",
                source=self.name,
            )

    async def rewind(self, attempt: int) -> None:
        if attempt > 1 and self.start is not None:
            self.head = b""  # re-read from the start
            await anyio.to_thread.run_sync(self.reader.seek, self.start)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/octet-stream"}
        if self.size is not None:
            headers["Content-Length"] = str(self.size)
        return headers

    async def stream(self) -> AsyncIterator[bytes]:
        sent = 0
        chunk, self.head = self.head, b""
        while True:
            if not chunk:
                if self.size is not None and sent >= self.size:
                    return  # every declared byte is sent: no read just to meet the end
                chunk = await self._read(UPLOAD_CHUNK_SIZE)
                if not chunk:
                    return
            self.started = True
            sent += len(chunk)
            yield chunk
            chunk = b""

    async def _read(self, n: int) -> bytes:
        # Off the event loop: a remote (s3fs) or slow disk read must not block other requests.
        try:
            return await anyio.to_thread.run_sync(self.reader.read, n)
        except OSError as exc:
            raise MediaReadError(
                f"Reading {self.name} failed: {exc}. Check the file/storage and try again",
                source=self.name,
            ) from exc

    def close(self) -> None:
        if self.owns_reader:
            self.reader.close()


def _tell_if_seekable(reader: BinaryIO) -> int | None:
    try:
        return reader.tell() if reader.seekable() else None
    except (OSError, AttributeError, ValueError):
        return None


def _remaining_size(reader: BinaryIO, start: int) -> int | None:
    """Bytes from ``start`` to the end: fstat for real files, else seek to the end and back."""
    fstat: Callable[[], int] | None = None
    try:
        fd = reader.fileno()
        fstat = lambda: os.fstat(fd).st_size  # noqa: E731
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pass
    try:
        if fstat is not None:
            return max(fstat() - start, 0)
        end = reader.seek(0, os.SEEK_END)
        reader.seek(start)
        return max(end - start, 0)
    except (OSError, ValueError):
        return None
