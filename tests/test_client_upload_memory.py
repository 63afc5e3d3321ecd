"""Streaming upload keeps client memory flat: a memory bound, not a timing assertion."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.upload_memory import MIB, run


@pytest.mark.slow
def test_256_mb_upload_grows_client_rss_by_less_than_100_mb(tmp_path: Path) -> None:
    size = 256 * MIB
    report = run(size, tmp_path)
    assert report["server_received_bytes"] == size  # the whole file arrived
    assert report["peak_growth_bytes"] < 100 * MIB, report
