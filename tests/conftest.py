"""Session-wide fixtures and the API-key leak scanner.

The scanner is a plain logging handler on the root logger plus a report hook: every log record
(formatted, with its traceback), every captured stdout/stderr section and every failure report is
searched for the suite's API keys. Any hit fails the session, naming where the key appeared.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.secrets import ALL_KEYS

_leaks: list[str] = []


def _scan(where: str, text: str) -> None:
    for key in ALL_KEYS:
        if key in text:
            _leaks.append(f"{where}: ...{text[max(0, text.index(key) - 80) : text.index(key)]}<KEY>")


class _LeakScanningHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = logging.Formatter().format(record)
        except Exception:  # a broken log call must not hide a leak in its args
            text = f"{record.msg!r} {record.args!r}"
        _scan(f"log record {record.name}", text)


_handler = _LeakScanningHandler(level=logging.DEBUG)


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(_handler)
    if root.level > logging.DEBUG:
        root.setLevel(logging.DEBUG)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, content in report.sections:
        _scan(f"{report.nodeid} [{name}]", content)
    if report.failed:
        _scan(f"{report.nodeid} [failure report]", report.longreprtext)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
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
