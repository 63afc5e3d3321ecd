"""The leak scanner must itself be able to fail: a key in a log record is caught, then forgiven.

The record goes straight to the scanner's handler (not through a logger), so pytest's own log
capture never holds the key and the session is not failed by this deliberate leak.
"""

import logging

from tests.conftest import _handler
from tests.support.secrets import KEY_A


def test_scanner_catches_a_key_in_a_log_record(leak_log: list[str]) -> None:
    before = len(leak_log)
    record = logging.LogRecord(
        "voxlake.test", logging.WARNING, __file__, 1, "oops %s", (KEY_A,), None
    )
    _handler.handle(record)
    assert len(leak_log) == before + 1
    assert "voxlake.test" in leak_log[-1]
    del leak_log[before:]
