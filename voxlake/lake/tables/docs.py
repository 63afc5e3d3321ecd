"""Regenerate the column tables of docs/tables.md from the schemas:
``python -m voxlake.lake.tables.docs docs/tables.md``.

Each registered table has a section headed ``## <name>`` (``### <name>`` for the result
tables) whose first Markdown table is its columns (:func:`schema_markdown`); this replaces
that table in place and leaves the prose around it alone. ``tests/test_tables.py`` fails when
the page is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from voxlake.lake.tables import SCHEMAS, schema_markdown

_COLUMNS = re.compile(r"^\| column \| type \| null\? \| meaning \|\n(?:\|.*\|\n)+", re.M)


def regenerate(page: str) -> str:
    """``page`` with every table's column list rewritten from its schema."""
    for name, schema in SCHEMAS.items():
        heading = re.search(rf"^#{{2,3}} `?{re.escape(name)}`?\s*$", page, re.M)
        if heading is None:
            raise ValueError(f"docs/tables.md has no section for the table {name!r}: add one")
        found = _COLUMNS.search(page, heading.end())
        if found is None:
            raise ValueError(f"the section of {name!r} has no column table to regenerate")
        page = page[: found.start()] + schema_markdown(schema) + "\n" + page[found.end() :]
    return page


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "docs/tables.md")
    path.write_text(regenerate(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
