"""Session-wide fixtures and the API-key leak scanner.

The scanner is a plain logging handler on the root logger plus a report hook: every log record
(formatted, with its traceback), every captured stdout/stderr section and every failure report is
searched for the suite's API keys. Any hit fails the session, naming where the key appeared.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.prefect_server import DatabaseTemplate
from tests.support.secrets import ALL_KEYS, KEY_A, KEY_B, SIGNATURE_MARKERS
from voxlake.emulator import EmulatorConfig, LocalServer
from voxlake.settings import POLL_FIRST_ENV

# The moto S3 server and the S3 fault proxy (session-wide AWS environment included).
pytest_plugins = ["tests.support.s3_fixtures"]

_leaks: list[str] = []


def _scan(where: str, text: str) -> None:
    for key in (*ALL_KEYS, *SIGNATURE_MARKERS):
        if key in text:
            _leaks.append(
                f"{where}: ...{text[max(0, text.index(key) - 80) : text.index(key)]}<KEY>"
            )


class _LeakScanningHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = logging.Formatter().format(record)
        except Exception:  # a broken log call must not hide a leak in its args
            text = f"{record.msg!r} {record.args!r}"
        _scan(f"log record {record.name}", text)


_handler = _LeakScanningHandler(level=logging.DEBUG)


def pytest_configure(config: pytest.Config) -> None:
    # The suite's servers finish a job in 0.05-0.5 s. Polling first at the production default
    # (3 s after a submit) would add 3 s to each of the suite's many runs; the poller's timing
    # itself is pinned on a fake clock (tests/unit/test_polling.py). Inherited by every process the
    # tests start.
    os.environ.setdefault(POLL_FIRST_ENV, "0.2")
    root = logging.getLogger()
    root.addHandler(_handler)
    if root.level > logging.DEBUG:
        root.setLevel(logging.DEBUG)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, content in report.sections:
        _scan(f"{report.nodeid} [{name}]", content)
    if report.failed:
        _scan(f"{report.nodeid} [failure report]", report.longreprtext)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Under pytest-xdist, on the controller: a worker's leaks join the session's report."""
    for leak in getattr(node, "workeroutput", {}).get("api_key_leaks", []):
        if leak not in _leaks:  # captured sections are scanned on both sides
            _leaks.append(leak)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its terminal is not shown; the controller's is
        workeroutput["api_key_leaks"] = list(_leaks)
        return
    if _leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.section("API KEY LEAKS", sep="!")
            for leak in _leaks:
                reporter.line(leak)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def leak_log() -> Iterator[list[str]]:
    """The leaks found so far; tests of the scanner itself may inspect and reset it."""
    yield _leaks


# -- local AssemblyAI emulator -------------------------------------------------------------------

FAST_PROCESSING_S = 0.02


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    """One emulator for the session: projects KEY_A and KEY_B, concurrency 5, fast jobs.

    It uses the deterministic ``scripted`` engine (the suite relies on the transcripts embedded
    in synthetic WAVs); tests of real recognition start their own ``make_server(engine="sphinx")``.
    """
    config = EmulatorConfig(
        engine="scripted",
        api_keys=[KEY_A, KEY_B],
        concurrency_limit=5,
        processing_fixed_s=FAST_PROCESSING_S,
        webhook_retry_delay_s=0.01,
    )
    with LocalServer(config) as srv:
        yield srv


@pytest.fixture
def make_server() -> Iterator[Callable[..., LocalServer]]:
    """Factory for a dedicated emulator; each is started at once and stopped at teardown.

    ``make_server(concurrency_limit=2, faults=...)`` takes any ``EmulatorConfig`` field;
    ``api_keys`` defaults to (KEY_A, KEY_B), processing to the fast session setting and
    ``engine`` to ``scripted``.
    Usable directly or as a context manager (stopping twice is harmless).
    """
    started: list[LocalServer] = []

    def make(**overrides: Any) -> LocalServer:
        overrides.setdefault("engine", "scripted")
        overrides.setdefault("api_keys", [KEY_A, KEY_B])
        overrides.setdefault("processing_fixed_s", FAST_PROCESSING_S)
        overrides.setdefault("webhook_retry_delay_s", 0.01)
        srv = LocalServer(EmulatorConfig(**overrides)).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


# -- Prefect -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prefect_db_template(tmp_path_factory: pytest.TempPathFactory) -> DatabaseTemplate:
    """The migrated database new Prefect servers of this session start from (``prefect_server``).

    In this process's base temporary folder: new for each session (an xdist worker's too), so
    never an earlier run's."""
    return DatabaseTemplate(tmp_path_factory.getbasetemp() / "prefect-template.db")


@pytest.fixture(scope="session")
def prefect_harness(prefect_db_template: DatabaseTemplate) -> Iterator[None]:
    """One real Prefect API (temporary server + SQLite) for every flow test in the session.

    Its database, as migrated at its start, becomes the session's template. Without telemetry:
    the server would store a telemetry session in it (and try to reach Prefect's host)."""
    from prefect.settings import (
        PREFECT_SERVER_ANALYTICS_ENABLED,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness
    from sqlalchemy.engine import make_url

    with (
        temporary_settings(updates={PREFECT_SERVER_ANALYTICS_ENABLED: False}),
        prefect_test_harness(server_startup_timeout=300),
    ):
        database = make_url(PREFECT_SERVER_DATABASE_CONNECTION_URL.value()).database
        assert database, "the Prefect test harness uses a SQLite file"
        prefect_db_template.save(Path(database))
        yield


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Callable[[LocalServer], None]:
    """Point flows at a server the way users do: through the environment, never a parameter."""

    def use(server: LocalServer) -> None:
        monkeypatch.setenv("ASSEMBLYAI_BASE_URL", server.base_url)
        monkeypatch.setenv("ASSEMBLYAI_API_KEY", KEY_A)

    return use
