"""Fixtures the end-to-end tests share: the session's Prefect API URL and a `voxlake serve-local`
process per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.clikit import ServeLocal


@pytest.fixture(scope="module")
def prefect_url(prefect_harness: None) -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness sets an API URL"
    return url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeLocal]:
    server = ServeLocal(tmp_path)
    yield server
    server.stop()
