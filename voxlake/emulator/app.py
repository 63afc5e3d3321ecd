"""The FastAPI application: AssemblyAI v2 pre-recorded routes plus /_voxlake/stats.

Choices where the public contract is silent are listed in docs/local-server.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp

from voxlake.emulator.config import EmulatorConfig, key_fingerprint
from voxlake.emulator.engines import EngineError, close_engine, get_engine
from voxlake.emulator.faults import (
    EdgeMiddleware,
    FaultInjector,
    InjectedReset,
    RateLimiter,
    install_log_filter,
)
from voxlake.emulator.params import ParamError, validate_transcript_request
from voxlake.emulator.persist import StateDir
from voxlake.emulator.render import (
    list_item,
    paragraphs_json,
    sentences_json,
    subtitles,
    transcript_json,
    word_search,
)
from voxlake.emulator.scheduler import SERVER_ERROR, Scheduler
from voxlake.emulator.stats import Stats
from voxlake.emulator.store import TranscriptRecord, TranscriptStore, UploadStore
from voxlake.emulator.synth import synth_wav
from voxlake.emulator.understanding import check_request
from voxlake.emulator.webhooks import deliver

log = logging.getLogger("voxlake.emulator")

AUTH_ERROR = "Authentication error, API token missing/invalid"
STATUSES = ("queued", "processing", "completed", "error")
_WRITE_BUFFER = 1 << 20


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def download_error(url: str) -> str:
    return (
        f"Download error, unable to download {url}. "
        "Please make sure the file exists and is accessible from the internet."
    )


class EmulatorState:
    """Everything one server instance owns. Async parts start in the app's lifespan."""

    def __init__(self, config: EmulatorConfig, base_url: str) -> None:
        self.config = config
        self.base_url = (config.public_base_url or base_url).rstrip("/")
        self.upload_prefix = f"{self.base_url}/upload/"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        # Kept on disk (voxlake.emulator.persist), or in memory only: the default, and the
        # fast path the tests and benchmarks take.
        self.disk: StateDir | None = None
        if config.state_dir is not None:
            self.disk = StateDir(Path(config.state_dir))
            root = self.disk.root
        elif config.upload_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="voxlake-emulator-")
            root = Path(self._tmp.name)
        else:
            root = Path(config.upload_dir)
        self.root = root
        disk = self.disk
        self.uploads = UploadStore(
            root / "uploads",
            config.upload_ttl_s,
            config.clock,
            on_change=None
            if disk is None
            else lambda up: disk.forget_upload(up) if up.deleted else disk.save_upload(up),
        )
        self.downloads = root / "downloads"
        self.downloads.mkdir(parents=True, exist_ok=True)
        self.transcripts = TranscriptStore(None if disk is None else disk.save_transcript)
        # Jobs a previous process accepted and did not finish: queued again at start.
        self._unfinished: list[TranscriptRecord] = []
        if disk is not None:
            for up in disk.load_uploads():
                self.uploads.restore(up)
            for rec in disk.load_transcripts():
                self.transcripts.restore(rec)
                if not rec.done:
                    self._unfinished.append(rec)
        self.stats = Stats()
        #: Called with each job's id as it ends, on the server's thread (LocalServer.on_job_end).
        self.job_end_listeners: list[Callable[[str], None]] = []
        # Raw keys live only in this dict (never logged); everything else uses fingerprints.
        self._projects = {k.get_secret_value(): key_fingerprint(k) for k in config.secret_keys}
        self.engine = get_engine(config.engine)
        self.scheduler: Scheduler | None = None
        self.http: httpx.AsyncClient | None = None
        self.executor: ThreadPoolExecutor | None = None
        self._bg: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    def project_for(self, header: str | None) -> str | None:
        if not header:
            return None
        return self._projects.get(header.strip())

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.stats.bind_loop(loop)
        workers = self.config.engine_workers or min(32, (os.cpu_count() or 2) + 4)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vx-engine")
        self.http = httpx.AsyncClient(follow_redirects=False)
        self.scheduler = Scheduler(
            limit=self.config.concurrency_limit,
            engine=self.engine,
            store=self.transcripts,
            stats=self.stats,
            executor=self.executor,
            resolve_media=self.resolve_media,
            fixed_s=self.config.processing_fixed_s,
            per_audio_s=self.config.processing_per_audio_s,
            clock=self.config.clock,
            on_finished=self._on_finished,
        )
        for rec in self._unfinished:  # oldest first, as they were queued
            self.transcripts.set_status(rec, "queued")
            self.scheduler.submit(rec)
        self._unfinished = []
        self.spawn(self._sweeper())

    async def stop(self) -> None:
        for task in list(self._bg):
            task.cancel()
        if self.scheduler is not None:
            await self.scheduler.close()
        for task in list(self._bg):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.http is not None:
            await self.http.aclose()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        # Last: recognitions still running are killed, not waited for (their jobs were
        # cancelled above), so the server stops in a moment even mid-job.
        close_engine(self.engine)

    def cleanup_files(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
        if self.disk is not None:
            self.disk.close()

    def changed(self, rec: TranscriptRecord) -> None:
        """Keep a change other than of status (creation, deletion) on disk, if kept there."""
        if self.transcripts.on_change is not None:
            self.transcripts.on_change(rec)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _sweeper(self) -> None:
        period = min(60.0, max(0.2, self.config.upload_ttl_s / 2))
        while True:
            await asyncio.sleep(period)
            self.sweep_uploads()

    def sweep_uploads(self) -> int:
        busy = {
            r.upload_id
            for r in self.transcripts
            if r.upload_id is not None and r.status in ("queued", "processing")
        }
        return self.uploads.sweep(lambda uid: uid in busy)

    # -- jobs ------------------------------------------------------------------------------
    def upload_id_of(self, audio_url: str) -> str | None:
        """The upload an ``audio_url`` names, if it is one of ours: under this server's upload
        prefix, or under any address with the id of an upload kept from a previous process of
        this server (which listened on another port). An upload id is a random UUID, so only
        the server that issued it knows it."""
        if audio_url.startswith(self.upload_prefix):
            return audio_url[len(self.upload_prefix) :].split("?")[0]
        if self.disk is not None:
            path = urlsplit(audio_url).path
            uid = path.rsplit("/", 1)[-1]
            if path == f"/upload/{uid}" and uid in self.uploads._uploads:
                return uid
        return None

    async def resolve_media(self, rec: TranscriptRecord) -> tuple[Path, Callable[[], None]]:
        if rec.upload_id is not None or self.upload_id_of(rec.audio_url) is not None:
            up = self.uploads._uploads.get(rec.upload_id or "")
            if up is None or up.deleted or not up.path.exists():
                raise EngineError(download_error(rec.audio_url))
            return up.path, lambda: None
        return await self._download(rec.audio_url)

    async def _download(self, url: str) -> tuple[Path, Callable[[], None]]:
        assert self.http is not None
        path = self.downloads / f"{uuid.uuid4()}.download"

        def cleanup() -> None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

        try:
            async with self.http.stream(
                "GET", url, timeout=self.config.download_timeout_s, follow_redirects=True
            ) as resp:
                if resp.status_code >= 400:
                    reason = resp.reason_phrase
                    kind = "Client" if resp.status_code < 500 else "Server"
                    raise EngineError(
                        f"Download error to {url}, {resp.status_code} {kind} Error: "
                        f"{reason} for url: {url}"
                    )
                with path.open("wb") as fh:
                    async for chunk in resp.aiter_bytes(_WRITE_BUFFER):
                        await asyncio.to_thread(fh.write, chunk)
        except EngineError:
            cleanup()
            raise
        except (httpx.HTTPError, OSError):
            cleanup()
            raise EngineError(download_error(url)) from None
        return path, cleanup

    def _on_finished(self, rec: TranscriptRecord) -> None:
        for listener in list(self.job_end_listeners):
            listener(rec.id)
        if rec.params.get("webhook_url") and not rec.deleted:
            assert self.http is not None
            cfg = self.config
            self.spawn(
                deliver(
                    self.http,
                    rec,
                    self.stats,
                    attempts=cfg.webhook_attempts,
                    timeout_s=cfg.webhook_timeout_s,
                    retry_delay_s=cfg.webhook_retry_delay_s,
                    on_change=lambda: self.stats.change(lambda s: None),
                )
            )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _drain(request: Request) -> None:
    with contextlib.suppress(ClientDisconnect):
        async for _ in request.stream():
            pass


def create_app(state: EmulatorState) -> ASGIApp:
    """The ASGI app uvicorn serves: FastAPI routes wrapped by the edge middleware."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="voxlake local AssemblyAI emulator",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.emulator = state

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = "Not found" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return _error(400, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _server_error(_: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, InjectedReset | ClientDisconnect):
            log.error("unhandled error: %s", type(exc).__name__)
        return _error(500, SERVER_ERROR)

    def auth(request: Request) -> str:
        project = state.project_for(request.headers.get("authorization"))
        if project is None:
            raise ApiError(401, AUTH_ERROR)
        return project

    def lookup(request: Request, transcript_id: str) -> TranscriptRecord:
        rec = state.transcripts.get(auth(request), transcript_id)
        if rec is None:
            raise ApiError(404, "Not found")
        return rec

    def completed(rec: TranscriptRecord) -> TranscriptRecord:
        # Undocumented upstream; we answer 400 so clients never mistake "not yet" for "empty".
        if rec.deleted:
            raise ApiError(400, "Transcript has been deleted.")
        if rec.status != "completed" or rec.result is None:
            raise ApiError(
                400, f"Transcript is not completed (status: {rec.status}); try again once it is."
            )
        return rec

    # -- upload ----------------------------------------------------------------------------
    @app.post("/v2/upload")
    async def upload(request: Request) -> Response:
        project = state.project_for(request.headers.get("authorization"))
        if project is None:
            await _drain(request)
            return _error(401, AUTH_ERROR)
        limit = state.config.max_upload_bytes
        too_big = f"Upload exceeds the maximum size of {limit} bytes."
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _drain(request)
            return _error(400, too_big)
        uid, path = state.uploads.new_path()
        size = 0
        over = False
        try:
            with path.open("wb") as fh:
                buf = bytearray()
                # Chunks are appended to a small buffer and flushed from a worker thread:
                # the body never sits in memory and a slow disk never blocks the event loop.
                async for chunk in request.stream():
                    size += len(chunk)
                    if over or size > limit:
                        over = True
                        continue  # keep draining so the client reads our 400
                    buf += chunk
                    if len(buf) >= _WRITE_BUFFER:
                        data, buf = buf, bytearray()
                        await asyncio.to_thread(fh.write, data)
                if buf and not over:
                    await asyncio.to_thread(fh.write, buf)
        except ClientDisconnect:
            path.unlink(missing_ok=True)
            raise
        if over:
            path.unlink(missing_ok=True)
            return _error(400, too_big)
        state.uploads.add(uid, project, path, size)

        def counted(s: Stats) -> None:
            s.upload_bytes += size
            s.uploads += 1

        state.stats.change(counted)
        return JSONResponse({"upload_url": f"{state.upload_prefix}{uid}"})

    @app.api_route("/upload/{upload_id}", methods=["GET", "HEAD"])
    async def fetch_upload(upload_id: str) -> Response:
        # Like AssemblyAI's CDN: upload URLs are for the API only, never downloadable.
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            "<Message>Access Denied</Message></Error>"
        )
        return Response(body, status_code=403, media_type="application/xml")

    # -- transcripts -----------------------------------------------------------------------
    @app.post("/v2/transcript")
    async def create_transcript(request: Request) -> Response:
        project = auth(request)
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "Request body must be valid JSON") from None
        try:
            params = validate_transcript_request(body)
            check_request(params)
        except ParamError as exc:
            raise ApiError(400, str(exc)) from None
        audio_url: str = params.pop("audio_url")
        upload_id = state.upload_id_of(audio_url)
        if upload_id is not None:
            up = state.uploads._uploads.get(upload_id)
            if up is not None and up.project != project:
                raise ApiError(403, "Cannot access uploaded file")
            if state.uploads.get(upload_id) is None:
                upload_id = None  # unknown or expired: the job fails with a download error
        secret = params.pop("webhook_auth_header_value", None)
        rec = state.transcripts.create(project, audio_url, params, state.config.clock())
        rec.upload_id = upload_id
        if secret:
            rec.webhook_auth_header_value = SecretStr(secret)
        state.stats.change(lambda s: s.submissions_by_key.update([project]))
        assert state.scheduler is not None
        state.scheduler.submit(rec)
        state.changed(rec)  # before the answer: a job the client knows of is on disk
        return JSONResponse(transcript_json(rec))

    @app.get("/v2/transcript")
    async def list_transcripts(request: Request) -> Response:
        project = auth(request)
        q = request.query_params
        raw_limit = q.get("limit", "10")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise ApiError(400, "limit must be an Integer") from None
        if not 1 <= limit <= 200:
            raise ApiError(400, "limit must be between 1 and 200")
        status = q.get("status")
        if status is not None and status not in STATUSES:
            raise ApiError(400, f"status must be one of: {', '.join(STATUSES)}")
        created_on = q.get("created_on")
        if created_on is not None:
            try:
                created_on = dt.date.fromisoformat(created_on).isoformat()
            except ValueError:
                raise ApiError(400, "created_on must be a date (YYYY-MM-DD)") from None
        if q.get("throttled_only", "false").lower() == "true":
            raise ApiError(400, "throttled_only is deprecated and not supported")
        anchors: dict[str, TranscriptRecord | None] = {}
        for name in ("before_id", "after_id"):
            value = q.get(name)
            anchors[name] = None
            if value is not None:
                anchor = state.transcripts.get(project, value)
                if anchor is None:
                    raise ApiError(400, f"{name} does not match any transcript")
                anchors[name] = anchor
        page, older, newer = state.transcripts.page(
            project, limit, status, created_on, anchors["before_id"], anchors["after_id"]
        )
        base = f"{state.base_url}/v2/transcript"
        keep: dict[str, Any] = {"limit": limit}
        if status:
            keep["status"] = status
        if created_on:
            keep["created_on"] = created_on
        qs = request.url.query
        return JSONResponse(
            {
                "page_details": {
                    "limit": limit,
                    "result_count": len(page),
                    "current_url": f"{base}?{qs}" if qs else base,
                    "prev_url": f"{base}?{urlencode({**keep, 'before_id': page[-1].id})}"
                    if older
                    else None,
                    "next_url": f"{base}?{urlencode({**keep, 'after_id': page[0].id})}"
                    if newer
                    else None,
                },
                "transcripts": [list_item(r, state.base_url) for r in page],
            }
        )

    @app.get("/v2/transcript/{transcript_id}")
    async def get_transcript(request: Request, transcript_id: str) -> Response:
        return JSONResponse(transcript_json(lookup(request, transcript_id)))

    @app.delete("/v2/transcript/{transcript_id}")
    async def delete_transcript(request: Request, transcript_id: str) -> Response:
        rec = lookup(request, transcript_id)
        if not rec.done:
            raise ApiError(400, "Transcript is still being processed; delete it once it is done.")
        rec.deleted = True
        if rec.upload_id is not None:
            state.uploads.delete(rec.upload_id)
        state.changed(rec)
        state.stats.change(lambda s: None)
        return JSONResponse(transcript_json(rec))

    @app.get("/v2/transcript/{transcript_id}/sentences")
    async def get_sentences(request: Request, transcript_id: str) -> Response:
        return JSONResponse(sentences_json(completed(lookup(request, transcript_id))))

    @app.get("/v2/transcript/{transcript_id}/paragraphs")
    async def get_paragraphs(request: Request, transcript_id: str) -> Response:
        return JSONResponse(paragraphs_json(completed(lookup(request, transcript_id))))

    @app.get("/v2/transcript/{transcript_id}/word-search")
    async def get_word_search(request: Request, transcript_id: str) -> Response:
        rec = lookup(request, transcript_id)
        raw = request.query_params.getlist("words")
        terms = [t.strip() for item in raw for t in item.split(",") if t.strip()]
        if not terms:
            raise ApiError(400, "words must be a comma-separated list of words")
        return JSONResponse(word_search(completed(rec), terms))

    @app.get("/v2/transcript/{transcript_id}/redacted-audio")
    async def get_redacted_audio(request: Request, transcript_id: str) -> Response:
        rec = completed(lookup(request, transcript_id))
        if not rec.params.get("redact_pii_audio"):
            raise ApiError(
                400, "Redacted audio is not available: redact_pii_audio was not enabled."
            )
        return JSONResponse(
            {
                "status": "redacted_audio_ready",
                "redacted_audio_url": f"{state.base_url}/redacted-audio/{rec.id}.wav",
            }
        )

    @app.get("/redacted-audio/{name}")
    async def fetch_redacted_audio(name: str) -> Response:
        rec = state.transcripts.get_any(name.removesuffix(".wav"))
        if rec is None or rec.result is None or rec.deleted:
            raise ApiError(404, "Not found")
        # Silence-like synthetic audio of the original duration stands in for the beeped file.
        return Response(synth_wav(None, rec.result.audio_duration), media_type="audio/wav")

    @app.get("/v2/transcript/{transcript_id}/{subtitle_format}")
    async def get_subtitles(request: Request, transcript_id: str, subtitle_format: str) -> Response:
        rec = lookup(request, transcript_id)
        if subtitle_format not in ("srt", "vtt"):
            raise ApiError(400, "subtitle_format must be one of: srt, vtt")
        raw = request.query_params.get("chars_per_caption")
        chars = None
        if raw is not None:
            if not raw.isdigit() or int(raw) < 1:
                raise ApiError(400, "chars_per_caption must be a positive Integer")
            chars = int(raw)
        return PlainTextResponse(subtitles(completed(rec), subtitle_format, chars))

    # -- emulator introspection (no auth: loopback only, holds no secrets) ------------------
    @app.get("/_voxlake/stats")
    async def get_stats(since: int | None = None, timeout: float = 10.0) -> Response:
        if since is not None:
            await state.stats.wait_changed(since, min(max(timeout, 0.0), 60.0))
        return JSONResponse(state.stats.snapshot())

    install_log_filter()
    stats = state.stats
    limiter = RateLimiter(state.config.rate_limit, state.config.rate_window_s)
    return EdgeMiddleware(
        app, stats=stats, limiter=limiter, injector=FaultInjector(state.config.faults)
    )
