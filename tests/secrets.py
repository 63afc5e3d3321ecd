"""API keys used by the suite.

They are distinctive strings so the session-wide leak scanner in ``conftest.py`` can search every
captured log line, stdout/stderr chunk and failure report for them.
"""

KEY_A = "vxk-test-alpha-7Hq2ZP9wLm3R"
KEY_B = "vxk-test-bravo-Q8sN4tYc1KfD"
ALL_KEYS = (KEY_A, KEY_B)
