"""The package's public API: ``voxlake.__all__``, each name the object its module defines, and
``import voxlake`` alone light (neither Prefect nor Arrow), so the core layer stays Prefect-free."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import voxlake


@pytest.mark.parametrize("name", voxlake.__all__)
def test_every_exported_name_is_its_modules_object(name: str) -> None:
    module = importlib.import_module(voxlake._EXPORTS[name])
    assert getattr(voxlake, name) is getattr(module, name)


def test_the_export_table_and_all_agree() -> None:
    assert sorted(voxlake._EXPORTS) == sorted(voxlake.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'transcribe'"):
        voxlake.transcribe  # noqa: B018


def test_importing_the_package_imports_neither_prefect_nor_arrow() -> None:
    script = (
        "import sys, voxlake\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'pyarrow'))\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
