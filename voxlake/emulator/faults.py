"""The server's edge: request accounting, the account rate limit and fault injection.

A pure ASGI middleware (not a FastAPI dependency) because a connection reset must be able to
send the real response headers and then drop the connection mid-body.

Order per /v2 request: rate limit (a 429 that counts as ``rate_limited``), then the route's
faults: added latency, then at most one of 429 (JSON + Retry-After), 500 (JSON), 503/504 (HTML,
not JSON, like a load balancer) or a reset. A reset lets the handler run (so e.g. a submission
really is created) and cuts its response after the headers and half the body: the nastiest case
for a client's retry logic.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
from collections import Counter, deque
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voxlake.emulator.config import FaultConfig, FaultSpec
from voxlake.emulator.stats import Stats

_ID = r"[^/]+"
_ROUTE_PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/v2/upload/?$"), "upload"),
    ("POST", re.compile(r"^/v2/transcript/?$"), "transcript_create"),
    ("GET", re.compile(r"^/v2/transcript/?$"), "transcript_list"),
    ("GET", re.compile(rf"^/v2/transcript/{_ID}/?$"), "transcript_get"),
    ("DELETE", re.compile(rf"^/v2/transcript/{_ID}/?$"), "transcript_delete"),
    ("GET", re.compile(rf"^/v2/transcript/{_ID}/sentences/?$"), "sentences"),
    ("GET", re.compile(rf"^/v2/transcript/{_ID}/paragraphs/?$"), "paragraphs"),
    ("GET", re.compile(rf"^/v2/transcript/{_ID}/word-search/?$"), "word_search"),
    ("GET", re.compile(rf"^/v2/transcript/{_ID}/redacted-audio/?$"), "redacted_audio"),
    ("GET", re.compile(rf"^/v2/transcript/{_ID}/(srt|vtt)/?$"), "subtitles"),
]

_HTML = {
    503: b"<html><head><title>503 Service Temporarily Unavailable</title></head><body>"
    b"<center><h1>503 Service Temporarily Unavailable</h1></center></body></html>\n",
    504: b"<html><head><title>504 Gateway Time-out</title></head><body>"
    b"<center><h1>504 Gateway Time-out</h1></center></body></html>\n",
}


class InjectedReset(Exception):
    """Raised inside the ASGI app to make uvicorn drop the connection mid-response."""


class _DropInjectedReset(logging.Filter):
    # uvicorn logs every exception escaping the app with a traceback; ours are deliberate.
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, InjectedReset)


_filter_installed = False


def install_log_filter() -> None:
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("uvicorn.error").addFilter(_DropInjectedReset())
        _filter_installed = True


def route_name(method: str, path: str) -> str:
    for m, pattern, name in _ROUTE_PATTERNS:
        if m == method and pattern.match(path):
            return name
    return "other"


class RateLimiter:
    """Sliding window over all /v2 requests of the account."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._hits: deque[float] = deque()

    def hit(self, now: float | None = None) -> int | None:
        """Record a request; return None if allowed, else the Retry-After seconds."""
        now = time.monotonic() if now is None else now
        while self._hits and now - self._hits[0] >= self.window_s:
            self._hits.popleft()
        if len(self._hits) >= self.limit:
            return max(1, math.ceil(self._hits[0] + self.window_s - now))
        self._hits.append(now)
        return None


class FaultInjector:
    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rngs: dict[str, random.Random] = {}

    def draw(self, route: str) -> tuple[FaultSpec | None, str | None]:
        spec = self.config.for_route(route)
        if spec is None:
            return None, None
        # One RNG per route, seeded from (seed, route): a route's fault sequence is
        # reproducible whatever the other routes do.
        rng = self._rngs.setdefault(route, random.Random(f"{self.config.seed}:{route}"))
        r = rng.random()
        for kind, p in (
            ("p429", spec.p_429),
            ("p500", spec.p_500),
            ("p503", spec.p_503),
            ("p504", spec.p_504),
            ("reset", spec.p_reset),
            ("p503_after", spec.p_503_after),
        ):
            if r < p:
                return spec, kind
            r -= p
        return spec, None


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: list[Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _drain(receive: Receive) -> None:
    # Read (and drop) the request body so the client gets our status instead of a broken pipe.
    while True:
        msg = await receive()
        if msg["type"] != "http.request" or not msg.get("more_body"):
            return


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, stats: Stats, limiter: RateLimiter, injector: FaultInjector
    ) -> None:
        self.app = app
        self.stats = stats
        self.limiter = limiter
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v2/"):
            await self.app(scope, receive, send)
            return
        route = route_name(scope["method"], scope["path"])
        status_seen: list[str] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen.append(str(message["status"]))
            await send(message)

        try:
            await self._handle(route, scope, receive, counting_send)
        except InjectedReset:
            status_seen[:] = ["reset"]
            raise
        finally:
            status = status_seen[0] if status_seen else "aborted"

            def count(s: Stats) -> None:
                s.requests_by_route[route] += 1
                s.requests_by_status[status] += 1

            self.stats.change(count)

    def _count_fault(self, route: str, kind: str) -> None:
        def bump(s: Stats) -> None:
            s.faults.setdefault(route, Counter())[kind] += 1

        self.stats.change(bump)

    async def _handle(self, route: str, scope: Scope, receive: Receive, send: Send) -> None:
        retry_after = self.limiter.hit()
        if retry_after is not None:
            self.stats.change(lambda s: setattr(s, "rate_limited", s.rate_limited + 1))
            if route == "upload":
                await _drain(receive)
            await _send_json(
                send,
                429,
                {"error": "Too Many Requests"},
                [(b"retry-after", str(retry_after).encode())],
            )
            return
        spec, kind = self.injector.draw(route)
        if spec is not None and spec.latency_s > 0:
            await asyncio.sleep(spec.latency_s)
        if kind is None or spec is None:
            await self.app(scope, receive, send)
            return
        self._count_fault(route, kind)
        if kind == "reset":
            await self.app(scope, receive, _resetting_send(send))
            return
        if kind == "p503_after":
            await self.app(scope, receive, _discarding_send)
            await _send_html(send, 503)
            return
        if route == "upload":
            await _drain(receive)
        if kind == "p429":
            retry = str(spec.retry_after_s).encode()
            await _send_json(send, 429, {"error": "Too Many Requests"}, [(b"retry-after", retry)])
        elif kind == "p500":
            await _send_json(
                send, 500, {"error": "Server error, developers have been alerted."}, []
            )
        else:
            await _send_html(send, 503 if kind == "p503" else 504)


async def _send_html(send: Send, code: int) -> None:
    body = _HTML[code]
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"text/html"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _discarding_send(message: Message) -> None:
    """The handler's response, dropped: a p503_after fault answers in its place."""


def _resetting_send(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            await send(message)
            return
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
            raise InjectedReset("injected connection reset")
        await send(message)

    return wrapped
