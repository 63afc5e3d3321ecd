"""The manifest file formats: CSV, JSONL and Parquet, read from a binary file.

The caller opens the file through fsspec, so a local manifest and one on S3 are read by the same
code. Each reader returns the problems of the file as a whole (its header) and its raw rows,
numbered as a user finds them (docs/manifest.md): CSV records with the header as row 1, JSONL
lines from 1, Parquet rows from 1. Values are not validated here, only collected.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from voxlake.manifest.items import Problem
from voxlake.manifest.options import OPTION_COLUMNS, RUN_ONLY_FIELDS, unknown_option_fix

ManifestFormat = Literal["csv", "jsonl", "parquet"]

FORMAT_BY_EXTENSION: dict[str, ManifestFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_RESERVED_COLUMNS = ("source", "media_id")
KNOWN_COLUMNS: frozenset[str] = OPTION_COLUMNS | frozenset(_RESERVED_COLUMNS)


@dataclass(slots=True)  # one per row of million-row manifests
class RawRow:
    row: int
    values: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    unparsed: bool = False  # the line was not an object: report that, not a "missing source"


Rows = tuple[list[Problem], list[RawRow]]


def read_rows(binary: IO[bytes], fmt: ManifestFormat) -> Rows:
    """The header problems and raw rows of the manifest in ``binary`` (a seekable file)."""
    if fmt not in _READERS:
        raise ValueError(f"format must be 'csv', 'jsonl' or 'parquet', not {fmt!r}")
    try:
        return _READERS[fmt](binary)
    except UnicodeDecodeError:
        # The text reader's error counts from its current buffer: the file's bytes say where.
        binary.seek(0)
        return [_not_utf8(binary)], []


def unknown_column_problem(row: int | None, name: str) -> Problem:
    if name in RUN_ONLY_FIELDS:
        return Problem(row, name, "not a manifest column", unknown_option_fix(name))
    return Problem(row, name, "unknown column", unknown_option_fix(name, KNOWN_COLUMNS))


def _text(binary: IO[bytes], newline: str | None) -> io.TextIOWrapper:
    # utf-8-sig: spreadsheet exports often start with a BOM that would otherwise become part of
    # the first column name ("\ufeffsource").
    return io.TextIOWrapper(binary, encoding="utf-8-sig", newline=newline)


def _read_csv(binary: IO[bytes]) -> Rows:
    text = _text(binary, newline="")
    try:
        return _parse_csv(text)
    finally:
        text.detach()  # the caller owns the file (and may read it again)


def _parse_csv(text: io.TextIOWrapper) -> Rows:
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return [], []
    names = [h.strip() for h in header]
    problems = [unknown_column_problem(1, n) for n in names if n and n not in KNOWN_COLUMNS]
    seen: set[str] = set()
    for n in names:
        if n in seen:
            problems.append(Problem(1, n, "column appears twice", "keep one of them"))
        seen.add(n)
    if "source" not in names:
        problems.append(Problem(1, "source", "missing required column", "add a 'source' column"))
    rows: list[RawRow] = []
    # Row numbers are records as a spreadsheet shows them: the header is row 1 and the first
    # data record row 2, even if a quoted cell spans several lines of the file.
    for number, cells in enumerate(reader, start=2):
        if not "".join(cells).strip():
            continue  # blank line: still counted, so numbers match what the user sees
        raw = RawRow(number, {})
        if len(cells) > len(names):
            raw.problems.append(
                Problem(
                    number,
                    None,
                    f"{len(cells)} cells but the header has {len(names)}",
                    "remove the extra cells or quote cells that contain commas",
                )
            )
        for name, cell in zip(names, cells, strict=False):
            cell = cell.strip()
            # An empty cell means "not set" so the run default applies.
            if name and cell and name in KNOWN_COLUMNS:
                raw.values[name] = cell
        rows.append(raw)
    return problems, rows


def _read_jsonl(binary: IO[bytes]) -> Rows:
    text = _text(binary, newline=None)
    try:
        return [], [
            row for number, line in enumerate(text, start=1) if (row := _json_row(number, line))
        ]
    finally:
        text.detach()


def _json_row(number: int, line: str) -> RawRow | None:
    if not line.strip():
        return None
    raw = RawRow(number, {})
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raw.problems.append(
            Problem(
                number,
                None,
                f"not valid JSON ({exc.msg} at character {exc.pos})",
                "write one JSON object per line",
            )
        )
        raw.unparsed = True
        return raw
    if not isinstance(obj, dict):
        raw.problems.append(
            Problem(
                number,
                None,
                f"a JSON {type(obj).__name__}, not an object",
                'write one object per line, e.g. {"source": "a.wav"}',
            )
        )
        raw.unparsed = True
        return raw
    for key, value in obj.items():
        if key not in KNOWN_COLUMNS:
            raw.problems.append(unknown_column_problem(number, key))
        elif value is not None:
            raw.values[key] = value
    return raw


def _read_parquet(binary: IO[bytes]) -> Rows:
    import pyarrow.parquet as pq  # imported lazily: only Parquet manifests need it

    try:
        table = pq.read_table(binary)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        return [Problem(None, None, f"cannot read Parquet: {exc}", "check the file")], []
    # Parquet has a schema, not a header row: a column problem is reported without a row.
    problems = [
        unknown_column_problem(None, n) for n in table.column_names if n not in KNOWN_COLUMNS
    ]
    if "source" not in table.column_names:
        problems.append(Problem(None, "source", "missing required column", "add a 'source' column"))
    keep = [n for n in table.column_names if n in KNOWN_COLUMNS]
    rows = [
        RawRow(i + 1, {k: v for k, v in record.items() if v is not None})
        for i, record in enumerate(table.select(keep).to_pylist())
    ]
    return problems, rows


_READERS: dict[str, Callable[[IO[bytes]], Rows]] = {
    "csv": _read_csv,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}


def _not_utf8(binary: IO[bytes]) -> Problem:
    """Where the first byte that is not UTF-8 stands, read in chunks from the file's start."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, lines = 0, 1
    while chunk := binary.read(1024 * 1024):
        # Bytes of a character that the previous chunk cut: they start the data decoded now.
        data = decoder.getstate()[0] + chunk
        try:
            decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            at = offset - (len(data) - len(chunk)) + exc.start
            line = lines + data.count(b"\n", 0, exc.start)
            return Problem(
                None,
                None,
                f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {at}, line {line})",
                "save it as UTF-8 (a spreadsheet's 'CSV UTF-8'), or: iconv -f latin1 -t utf-8",
            )
        offset += len(chunk)
        lines += chunk.count(b"\n")
    # The text reader failed on these bytes a moment ago; a file changed under us is all it
    # can be, and it is not readable as text either way.
    return Problem(None, None, "not UTF-8 text", "save it as UTF-8")
