"""The leak scanner must itself be able to fail: a logged key is caught, then forgiven here."""

import logging

from tests.secrets import KEY_A


def test_scanner_catches_a_logged_key(leak_log: list[str]) -> None:
    before = len(leak_log)
    logging.getLogger("voxlake.test").warning("oops %s", KEY_A)
    assert len(leak_log) == before + 1
    assert "voxlake.test" in leak_log[-1]
    del leak_log[before:]
