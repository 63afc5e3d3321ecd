"""The API key never appears in logs (DEBUG, incl. httpx/httpcore), reprs, errors or tracebacks."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest
from pydantic import ValidationError

from tests.support.secrets import KEY_A, KEY_B
from voxlake.client import AssemblyAIClient
from voxlake.config import ClientSettings
from voxlake.emulator import synth
from voxlake.errors import AuthenticationError, NetworkError
from voxlake.models import TranscriptParams
from voxlake.polling import wait_for_completion
from voxlake.retry import RetryPolicy


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    parts = []
    for record in caplog.records:
        parts.append(logging.Formatter().format(record))
        parts.append(repr(record.args))
        parts.append(repr(record.__dict__))
    return "\n".join(parts)


def _render(exc: BaseException) -> str:
    chain = "".join(traceback.format_exception(exc))
    return "\n".join([chain, str(exc), repr(exc), repr(vars(exc))])


@pytest.mark.anyio
async def test_key_never_leaks_in_a_full_session_or_a_401(
    local_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "voxlake", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)

    async with AssemblyAIClient(api_key=KEY_A, base_url=local_server.base_url) as client:
        uploaded = await client.upload(synth.synth_wav("the key stays secret", 1.0))
        job = await client.create_transcript(
            TranscriptParams(audio_url=uploaded.upload_url, speech_models=["universal-2"])
        )
        await wait_for_completion(client, job.id, expected_processing_s=0.02, min_interval_s=0.02)
        texts = [repr(client), str(client), repr(client.settings), str(client.settings)]

    # A wrong key (another real key for a different server setup): the 401 must not echo it.
    bad_key = KEY_B + "-revoked"
    bad = AssemblyAIClient(
        api_key=bad_key, base_url=local_server.base_url, retry=RetryPolicy(max_attempts=3)
    )
    async with bad:
        with pytest.raises(AuthenticationError) as info:
            await bad.get_transcript(job.id)
    texts.append(_render(info.value))
    texts.append(repr(bad))

    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # at DEBUG
    logged = _everything_logged(caplog)
    for key in (KEY_A, KEY_B, bad_key):
        assert key not in logged
        for text in texts:
            assert key not in text


@pytest.mark.anyio
async def test_network_error_tracebacks_do_not_carry_the_key() -> None:
    client = AssemblyAIClient(
        api_key=KEY_A, base_url="http://127.0.0.1:9", retry=RetryPolicy.none()
    )
    async with client:
        with pytest.raises(NetworkError) as info:
            await client.list_transcripts()
    assert KEY_A not in _render(info.value)


def test_settings_validation_errors_hide_the_key() -> None:
    with pytest.raises(ValidationError) as info:
        ClientSettings(api_key=KEY_A, max_connections="lots")
    assert KEY_A not in str(info.value) and KEY_A not in repr(info.value)
