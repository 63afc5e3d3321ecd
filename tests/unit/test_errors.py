"""HTTP statuses and transport failures map to the one error hierarchy; retries are bounded.

Narrow unit tests over ``httpx.MockTransport``; the contract tests use the real local server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from tests.support.secrets import KEY_A
from voxlake.client import AssemblyAIClient
from voxlake.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ForbiddenError,
    InvalidResponseError,
    NetworkError,
    NotFoundError,
    PollTimeoutError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TranscriptFailedError,
    UploadAccessError,
    VoxlakeError,
)
from voxlake.retry import RetryPolicy, parse_retry_after

BASE = "https://api.test"
TID = "5551722-f677-48a7-9d4b-1234567890ab"
Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """Counts requests and records every sleep the retry policy asks for."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def client(self, *, max_attempts: int = 4, retry: bool = True) -> AssemblyAIClient:
        policy = (
            RetryPolicy(max_attempts=max_attempts, sleep=self.sleep, rng=lambda: 1.0)
            if retry
            else None
        )
        return AssemblyAIClient(
            api_key=KEY_A, base_url=BASE, retry=policy, transport=httpx.MockTransport(self)
        )


def _html(status: int) -> Handler:
    body = f"<html><body><h1>{status} Gateway trouble</h1></body></html>"
    return lambda _req: httpx.Response(status, text=body, headers={"content-type": "text/html"})


def _json(status: int, error: str, headers: dict[str, str] | None = None) -> Handler:
    return lambda _req: httpx.Response(status, json={"error": error}, headers=headers)


STATUS_CASES = [
    (_json(400, "format_text must be a Boolean"), BadRequestError, False, 400),
    (
        _json(401, "Authentication error, API token missing/invalid"),
        AuthenticationError,
        False,
        401,
    ),
    (_json(403, "Cannot access uploaded file"), UploadAccessError, False, 403),
    (_json(403, "Forbidden"), ForbiddenError, False, 403),
    (_json(404, "Not found"), NotFoundError, False, 404),
    (_json(429, "Too Many Requests", {"Retry-After": "7"}), RateLimitError, True, 429),
    (_json(429, "Too Many Requests"), RateLimitError, True, 429),
    (_json(500, "Server error, developers have been alerted."), ServerError, True, 500),
    (_html(502), ServerError, True, 502),
    (_html(503), ServerError, True, 503),
    (_html(504), ServerError, True, 504),
    (lambda _r: httpx.Response(504, content=b""), ServerError, True, 504),
    (_json(409, "Conflict"), APIError, False, 409),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handler", "cls", "transient", "status"),
    STATUS_CASES,
    ids=[f"{c[3]}-{c[1].__name__}-{i}" for i, c in enumerate(STATUS_CASES)],
)
async def test_status_maps_to_error_class(
    handler: Handler, cls: type[APIError], transient: bool, status: int
) -> None:
    rec = Recorder(handler)
    async with rec.client(max_attempts=3) as client:
        with pytest.raises(cls) as info:
            await client.get_transcript(TID)
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.transient is transient
    assert err.transcript_id == TID and TID in str(err)
    assert "<html" not in str(err)  # HTML error pages are summarised, not pasted
    # Transient errors are retried up to the bound; terminal ones exactly once.
    expected_requests = 3 if transient else 1
    assert len(rec.requests) == expected_requests
    assert err.attempts == expected_requests


@pytest.mark.anyio
async def test_upload_access_error_says_what_to_do() -> None:
    rec = Recorder(_json(403, "Cannot access uploaded file"))
    async with rec.client() as client:
        with pytest.raises(UploadAccessError) as info:
            await client.create_transcript(
                {"audio_url": "https://cdn.assemblyai.com/upload/x", "speech_models": ["u"]}
            )
    assert "upload the file again" in str(info.value)
    assert isinstance(info.value, ForbiddenError)


TRANSPORT_CASES = [
    (httpx.ConnectError("connection refused"), NetworkError),
    (httpx.ReadError("connection reset by peer"), NetworkError),
    (httpx.WriteError("broken pipe"), NetworkError),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), NetworkError),
    (httpx.ReadTimeout("timed out"), RequestTimeoutError),
    (httpx.ConnectTimeout("timed out"), RequestTimeoutError),
    (httpx.PoolTimeout("pool exhausted"), RequestTimeoutError),
]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "cls"), TRANSPORT_CASES, ids=[type(c[0]).__name__ for c in TRANSPORT_CASES]
)
async def test_transport_errors_are_transient_network_errors(
    exc: Exception, cls: type[NetworkError]
) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise exc

    rec = Recorder(boom)
    async with rec.client(max_attempts=3) as client:
        with pytest.raises(cls) as info:
            await client.get_transcript(TID)
    err = info.value
    assert err.transient is True
    assert err.__cause__ is exc  # translated once, chained
    assert len(rec.requests) == 3 and err.attempts == 3
    assert "after 3 attempts" in str(err)
    if cls is RequestTimeoutError:
        assert isinstance(err, TimeoutError)


@pytest.mark.anyio
async def test_retry_after_seconds_is_honoured_then_succeeds() -> None:
    responses = iter(
        [
            httpx.Response(429, json={"error": "Too Many Requests"}, headers={"Retry-After": "7"}),
            httpx.Response(200, json={"upload_url": "https://cdn/x"}),
        ]
    )
    rec = Recorder(lambda _r: next(responses))
    async with rec.client() as client:
        result = await client.upload(b"RIFF....WAVEfmt ")
    assert result.upload_url == "https://cdn/x"
    assert rec.sleeps == [7.0]
    assert len(rec.requests) == 2


@pytest.mark.anyio
async def test_retry_after_http_date_is_honoured() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    rec = Recorder(_json(429, "Too Many Requests", {"Retry-After": format_datetime(when, True)}))
    async with rec.client(max_attempts=2) as client:
        with pytest.raises(RateLimitError) as info:
            await client.get_transcript(TID)
    assert info.value.retry_after is not None and 25 <= info.value.retry_after <= 30
    assert len(rec.sleeps) == 1 and 25 <= rec.sleeps[0] <= 30


@pytest.mark.anyio
async def test_retry_after_is_capped() -> None:
    rec = Recorder(_json(429, "Too Many Requests", {"Retry-After": "86400"}))
    policy = RetryPolicy(max_attempts=2, max_retry_after=60, sleep=rec.sleep)
    client = AssemblyAIClient(
        api_key=KEY_A, base_url=BASE, retry=policy, transport=httpx.MockTransport(rec)
    )
    async with client:
        with pytest.raises(RateLimitError):
            await client.get_transcript(TID)
    assert rec.sleeps == [60]


@pytest.mark.anyio
async def test_backoff_is_exponential_with_full_jitter_and_bounded() -> None:
    rec = Recorder(_json(500, "Server error, developers have been alerted."))
    policy = RetryPolicy(
        max_attempts=6, base_delay=1.0, max_delay=5.0, sleep=rec.sleep, rng=lambda: 0.5
    )
    client = AssemblyAIClient(
        api_key=KEY_A, base_url=BASE, retry=policy, transport=httpx.MockTransport(rec)
    )
    async with client:
        with pytest.raises(ServerError) as info:
            await client.get_transcript(TID)
    # ceilings 1, 2, 4, 5 (capped), 5 -- times the jitter draw 0.5
    assert rec.sleeps == [0.5, 1.0, 2.0, 2.5, 2.5]
    assert len(rec.requests) == 6 and info.value.attempts == 6


@pytest.mark.anyio
async def test_401_is_never_retried() -> None:
    rec = Recorder(_json(401, "Authentication error, API token missing/invalid"))
    async with rec.client(max_attempts=10) as client:
        with pytest.raises(AuthenticationError):
            await client.list_transcripts()
    assert len(rec.requests) == 1 and rec.sleeps == []


@pytest.mark.anyio
async def test_retry_none_makes_exactly_one_attempt() -> None:
    rec = Recorder(_html(503))
    async with rec.client(retry=False) as client:
        with pytest.raises(ServerError) as info:
            await client.get_transcript(TID)
    assert len(rec.requests) == 1 and info.value.attempts == 1
    assert RetryPolicy.none().max_attempts == 1


@pytest.mark.anyio
async def test_create_transcript_not_resent_when_a_job_may_exist() -> None:
    """POST /v2/transcript is not idempotent: a 5xx or read error may have created a job."""
    for handler, expected in [
        (_json(500, "Server error, developers have been alerted."), 1),
        (_html(504), 1),
        (_json(429, "Too Many Requests", {"Retry-After": "1"}), 3),
        # A 503 may come from a proxy after the job was created: not resent either.
        (_html(503), 1),
    ]:
        rec = Recorder(handler)
        async with rec.client(max_attempts=3) as client:
            with pytest.raises(APIError):
                await client.create_transcript({"audio_url": "https://x", "speech_models": ["u"]})
        assert len(rec.requests) == expected, handler


@pytest.mark.anyio
async def test_create_transcript_resent_after_connect_error_only() -> None:
    def refuse(_r: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    def reset(_r: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("reset")

    for handler, expected in [(refuse, 3), (reset, 1)]:
        rec = Recorder(handler)
        async with rec.client(max_attempts=3) as client:
            with pytest.raises(NetworkError):
                await client.create_transcript({"audio_url": "https://x", "speech_models": ["u"]})
        assert len(rec.requests) == expected


@pytest.mark.anyio
async def test_invalid_json_on_success_is_terminal() -> None:
    rec = Recorder(lambda _r: httpx.Response(200, text="<html>captive portal</html>"))
    async with rec.client() as client:
        with pytest.raises(InvalidResponseError) as info:
            await client.get_transcript(TID)
    assert not info.value.transient and len(rec.requests) == 1


@pytest.mark.anyio
async def test_unsupported_scheme_is_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        AssemblyAIClient(api_key=KEY_A, base_url="ftp://nope")


def test_outcome_errors_carry_id_and_advice() -> None:
    failed = TranscriptFailedError(TID, "Audio duration is too short.")
    assert TID in str(failed) and "too short" in str(failed) and not failed.transient
    timeout = PollTimeoutError(TID, 600, "processing")
    assert TID in str(timeout) and "poll transcript" in str(timeout)
    assert "Rerun the same command" in str(timeout) and timeout.transient
    assert isinstance(timeout, TimeoutError)
    for err in (failed, timeout):
        assert isinstance(err, VoxlakeError)


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("-4") == 0.0
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(date, now=now) == 90.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=5), True), now=now) == 0.0


def test_retry_policy_is_bounded() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=1000)


def _voxlake_exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in the voxlake package outside the local server (whose
    errors are its own internals, translated at its edges: voxlake.errors' docstring)."""
    import importlib
    import inspect
    import pkgutil

    import voxlake

    found: list[type[BaseException]] = []
    for info in pkgutil.walk_packages(voxlake.__path__, "voxlake."):
        if info.name.startswith("voxlake.emulator"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == module.__name__
            ):
                found.append(obj)
    return found


def test_every_voxlake_exception_is_in_the_one_tree() -> None:
    """Every exception voxlake raises derives from VoxlakeError and is drawn in the tree of
    voxlake.errors' docstring; a ``KeyboardInterrupt`` (an interrupt, not an error, that no
    ``except Exception`` may swallow) is the only exception."""
    import voxlake.errors

    classes = _voxlake_exception_classes()
    assert len(classes) > 30  # the walk found the package's modules
    outside = [
        f"{c.__module__}.{c.__qualname__}"
        for c in classes
        if not issubclass(c, VoxlakeError | KeyboardInterrupt)
    ]
    assert outside == []
    tree = voxlake.errors.__doc__ or ""
    undrawn = [c.__qualname__ for c in classes if not re.search(rf"\b{c.__qualname__}\b", tree)]
    assert undrawn == []
