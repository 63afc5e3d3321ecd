"""Whether `voxlake run` reports to a Prefect API: read where Prefect reads it, without
importing Prefect (voxlake.prefect_api.configured)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxlake.prefect_api import configured

URL = "http://127.0.0.1:4200/api"


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder to run from, and a Prefect home with no profiles file."""
    for name in ("PREFECT_API_URL", "PREFECT_PROFILE", "PREFECT_PROFILES_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    folder = tmp_path / "cwd"
    folder.mkdir()
    return folder


def test_nothing_configured(bare: Path) -> None:
    assert not configured(bare)


def test_the_environment(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", URL)
    assert configured(bare)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (".env", f"OTHER=1\nexport PREFECT_API_URL='{URL}'\n"),
        ("prefect.toml", f'[api]\nurl = "{URL}"\n'),
        ("pyproject.toml", f'[project]\nname = "x"\n\n[tool.prefect.api]\nurl = "{URL}"\n'),
    ],
)
def test_a_file_in_the_current_folder(bare: Path, name: str, text: str) -> None:
    (bare / name).write_text(text)
    assert configured(bare)


def test_files_that_name_no_api(bare: Path) -> None:
    (bare / ".env").write_text("PREFECT_API_URL=\n")
    (bare / "prefect.toml").write_text("[api\nbroken")
    (bare / "pyproject.toml").write_text('[project]\nname = "voxlake"\n')
    assert not configured(bare)


def test_the_active_profile(bare: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    profiles = home / "profiles.toml"
    profiles.write_text(
        f'active = "local"\n\n[profiles.local]\nPREFECT_API_URL = "{URL}"\n\n'
        '[profiles.ephemeral]\nPREFECT_SERVER_EPHEMERAL_ENABLED = "true"\n'
    )
    assert configured(bare)
    monkeypatch.setenv("PREFECT_PROFILE", "ephemeral")  # another profile chosen: none
    assert not configured(bare)
    monkeypatch.delenv("PREFECT_PROFILE")
    moved = tmp_path / "elsewhere.toml"
    profiles.rename(moved)
    assert not configured(bare)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(moved))
    assert configured(bare)
