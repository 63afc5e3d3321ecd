"""`voxlake --version` and `--help`, through the real command (``python -m voxlake.cli``)."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from voxlake.cli import app

REPO = Path(__file__).resolve().parents[2]


def _voxlake(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command with its output piped (not a terminal), as in a pipe or a CI log."""
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | env
    return subprocess.run(
        [sys.executable, "-m", "voxlake.cli", *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version_prints_the_installed_version_without_importing_prefect() -> None:
    # -X importtime lists every module the process imported, on stderr.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "voxlake.cli", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"voxlake {importlib.metadata.version('voxlake')}\n"
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert not {name for name in imported if name.split(".")[0] in ("prefect", "pyarrow")}


def _options(command: str) -> list[str]:
    """Every option name of a subcommand, e.g. '--max-audio-hours', '--no-progress'."""
    cli = typer.main.get_command(app)
    names: list[str] = []
    for param in cli.commands[command].params:  # type: ignore[attr-defined]
        names += [*param.opts, *param.secondary_opts]
    return [name for name in names if name.startswith("--")]


@pytest.mark.parametrize(
    ("command", "columns"),
    [
        *[
            (command, "60")
            for command in ("run", "serve", "serve-local", "query", "report", "purge", "webhooks")
        ],
        ("run", None),  # piped with no COLUMNS: rich cut it at 80 columns
    ],
)
def test_help_is_whole_in_a_narrow_terminal_and_in_a_pipe(
    command: str, columns: str | None
) -> None:
    done = _voxlake(command, "--help", **({"COLUMNS": columns} if columns else {}))

    assert done.returncode == 0, done.stderr
    text = done.stdout
    width = int(columns) if columns else 80
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= width, text
    words = set(re.findall(r"--[a-z0-9-]+", text))
    missing = [name for name in _options(command) if name not in words]
    assert not missing, f"options cut or missing from the help: {missing}\n{text}"
