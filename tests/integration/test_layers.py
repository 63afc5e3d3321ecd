"""The layers: a core that does not import Prefect, and Prefect glue around it.

The core (client, run, ledger, tables, manifest, polling, estimate, report, the emulator,
...) is every module of the package except the glue named below, so a new module is core unless
it is added here on purpose. The check imports each core module in a fresh interpreter and
names the first one that brought Prefect in.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import voxlake

REPO = Path(__file__).resolve().parents[2]

# The modules that talk to Prefect (at import or when called), and the CLI that starts them.
GLUE = {
    "voxlake.cli",
    "voxlake.credentials",
    "voxlake.flows",
    "voxlake.flows.backfill",
    "voxlake.flows.progress",
    "voxlake.flows.transcribe",
    "voxlake.prefect_api",
    "voxlake.runner",
    "voxlake.serve",
    "voxlake.shared_budget",
    "voxlake.steps",
}


def package_modules() -> set[str]:
    return {m.name for m in pkgutil.walk_packages(voxlake.__path__, "voxlake.")}


def test_the_glue_list_names_real_modules() -> None:
    assert package_modules() >= GLUE


def test_the_core_imports_without_prefect() -> None:
    core = sorted(package_modules() - GLUE)
    assert "voxlake.run.transcription" in core and "voxlake.ledger" in core
    script = textwrap.dedent(
        """
        import importlib, json, sys
        for name in json.loads(sys.argv[1]):
            importlib.import_module(name)
            if any(m == "prefect" or m.startswith("prefect.") for m in sys.modules):
                print(json.dumps(name))
                break
        else:
            print(json.dumps(None))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(core)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    culprit = json.loads(done.stdout.strip().splitlines()[-1])
    assert culprit is None, f"importing {culprit} imported prefect; the core must not"
