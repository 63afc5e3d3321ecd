"""Streaming upload keeps client memory flat: a memory bound, not a timing assertion."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.emulator.helpers import serve_local_process
from tests.support.memory import MIB, measure_upload, write_sparse_wav
from tests.support.secrets import KEY_A


@pytest.mark.slow
def test_256_mb_upload_grows_client_rss_by_less_than_100_mb(tmp_path: Path) -> None:
    size = 256 * MIB
    media = write_sparse_wav(tmp_path / "big.wav", size)
    warmup = write_sparse_wav(tmp_path / "warmup.wav", 4 * MIB)
    with serve_local_process(tmp_path / "server") as (_, base_url):
        report = asyncio.run(measure_upload(base_url, KEY_A, media, warmup))
    stored = [p.stat().st_size for p in (tmp_path / "server").rglob("*") if p.is_file()]
    assert max(stored) == size  # the whole file arrived
    assert report["peak_growth_bytes"] < 100 * MIB, report
