"""voxlake's environment is read in one place (voxlake.settings), and test hooks need an opt-in."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clikit import REPO, clean_env
from voxlake.settings import Settings, SettingsError

PACKAGE = Path(__file__).resolve().parents[2] / "voxlake"
# The emulator shares no code with the client, so its fault knobs keep their own reader.
ALLOWED = {PACKAGE / "settings.py", PACKAGE / "emulator" / "config.py"}
READ = re.compile(r"\b(environ|getenv)\b")


def test_no_voxlake_variable_is_read_outside_the_settings_module() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in ALLOWED:
            continue
        text = path.read_text(encoding="utf-8")
        # Names bound to a VOXLAKE_ variable's name (NAME_ENV = "VOXLAKE_...") count as the name.
        aliases = re.findall(r"^(\w+)\s*(?::[^=]+)?=\s*[\"']VOXLAKE_", text, re.MULTILINE)
        names = re.compile(r"[\"']VOXLAKE_" + "".join(rf"|\b{a}\b" for a in aliases))
        for number, line in enumerate(text.splitlines(), 1):
            if READ.search(line) and names.search(line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "read VOXLAKE_* through voxlake.settings:\n" + "\n".join(offenders)


# The modules that read the settings themselves (voxlake.settings.settings()), and why; the rest
# get what they need passed down from these edges.
READS_SETTINGS = {
    # The command line's edge: the callback (every command), and the commands that start
    # a server or a run.
    "cli/common.py": "the command line's edge",
    "cli/run.py": "the command line's edge",
    "cli/serve_local.py": "the command line's edge",
    "cli/recollect.py": "the command line's edge",
    "flows/transcribe.py": "the flow's edge (a deployment's run starts there)",
    "steps.py": "Prefect's pull step, run by a worker before any flow",
    "crashpoints.py": "the test hook, read where it fires; armed only by VOXLAKE_TEST_HOOKS=1",
    # Defaults for callers from Python; the flow passes the values it read.
    "shared_budget.py": "account_figures() without settings",
    "run/state.py": "RunSettings() without poll_first_s",
    # Reached from every filesystem constructor (voxlake.lake will own them).
    "storage.py": "VOXLAKE_S3_DEBUG_LOGGING where an S3 filesystem is made",
}


def test_the_settings_are_read_at_the_edges_and_passed_down() -> None:
    readers = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "settings.py" and re.search(r"\b(read_)?settings\(\)", text):
            readers.add(str(path.relative_to(PACKAGE)))
    assert readers <= set(READS_SETTINGS), sorted(readers - set(READS_SETTINGS))


def test_a_crash_point_fires_only_with_the_test_hooks_opt_in() -> None:
    assert Settings.from_env({"VOXLAKE_CRASHPOINT": "poll:2"}).crashpoint is None
    armed = Settings.from_env({"VOXLAKE_TEST_HOOKS": "1", "VOXLAKE_CRASHPOINT": "poll:2"})
    assert armed.crashpoint == "poll:2"
    assert Settings.from_env({}) == Settings()


def test_a_bad_value_is_named() -> None:
    for env, name in (
        ({"VOXLAKE_POLL_FIRST_S": "slow"}, "VOXLAKE_POLL_FIRST_S='slow'"),
        ({"VOXLAKE_ACCOUNT_RATE_LIMIT": "many"}, "VOXLAKE_ACCOUNT_RATE_LIMIT='many'"),
    ):
        with pytest.raises(SettingsError, match=name):
            Settings.from_env(env)
    parsed = Settings.from_env(
        {"VOXLAKE_ACCOUNT_RATE_LIMIT": "600/60", "VOXLAKE_LOCAL_API_KEYS": " a, ,b "}
    )
    assert (parsed.account_rate_limit, parsed.local_api_keys) == ((600, 60.0), ("a", "b"))


def test_the_cli_reads_the_environment_first_and_names_a_bad_value(tmp_path: Path) -> None:
    # Read at the edge, before the command runs: `query` itself uses no VOXLAKE_* variable.
    cmd = [sys.executable, "-m", "voxlake.cli", "query", str(tmp_path), "select 1"]
    env = clean_env(VOXLAKE_POLL_FIRST_S="slow")
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: VOXLAKE_POLL_FIRST_S='slow' is not a number of seconds from 0 to 3600; unset "
        "it for the default, 3 s"
    ]
