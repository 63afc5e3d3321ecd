"""Reading and validating manifests into :class:`MediaItem`s.

A manifest says *what* to transcribe: one row per media item. It can be a CSV, JSONL or Parquet
file, a directory (every media file below it) or a glob (``data/**/*.wav``). Everything is
validated here, before any upload, so a typo in row 9,000 fails the run in a second instead of
after 8,999 uploads. The user-facing rules (columns, options, row numbering, the ``media_id`` rule)
are documented in ``docs/manifest.md``; keep the two in sync.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import difflib
import glob
import hashlib
import json
import os
import stat
import typing
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from voxlake.errors import VoxlakeError
from voxlake.sources import (
    ObjectInfo,
    is_media_name,
    list_s3_media,
    normalize_extensions,
    stat_s3_objects,
)
from voxlake.storage import (
    S3Options,
    StorageError,
    is_s3_url,
    join_s3,
    s3_filesystem,
    s3_path,
    split_s3,
    storage_error,
)

__all__ = [
    "MEDIA_EXTENSIONS",
    "InvalidRow",
    "Manifest",
    "ManifestError",
    "ManifestFormat",
    "MediaItem",
    "Problem",
    "SourceInfo",
    "SourceKind",
    "TranscriptionOptions",
    "options_hash",
    "read_manifest",
]

ManifestFormat = Literal["csv", "jsonl", "parquet"]

#: File extensions (lower case, without the dot) treated as media when a manifest is a directory
#: or a glob. AssemblyAI accepts most audio and video containers; this list is the common ones.
MEDIA_EXTENSIONS: frozenset[str] = frozenset(
    {
        # audio
        "wav", "wave", "mp3", "flac", "ogg", "oga", "opus", "m4a", "aac", "wma", "aiff", "aif",
        "amr", "webm", "3ga", "mka", "spx", "ac3",
        # video
        "mp4", "m4v", "mov", "mkv", "avi", "wmv", "flv", "mpeg", "mpg", "3gp", "ts", "mts",
    }
)  # fmt: skip

_FORMAT_BY_EXTENSION: dict[str, ManifestFormat] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_GLOB_CHARS = frozenset("*?[")


class SourceKind(StrEnum):
    """Where a media item's bytes live; decides whether the flow uploads it."""

    local = "local"  # a file on this machine: uploaded to /v2/upload first
    s3 = "s3"  # s3://bucket/key: streamed from S3 into /v2/upload, or presigned (docs/s3.md)
    http = "http"  # http(s) URL: passed to AssemblyAI as audio_url, which fetches it itself


# --- transcription options --------------------------------------------------------------------

#: The model voxlake asks for when neither the run defaults nor the row choose one. AssemblyAI has
#: no server-side default and rejects a request without ``speech_models``.
DEFAULT_SPEECH_MODELS: tuple[str, ...] = ("universal-2",)

# AssemblyAI's documented defaults (openapi.yml TranscriptOptionalParams). Only used by
# options_hash, so that writing `punctuate=true` explicitly hashes like leaving it unset: the
# transcript is the same, so the hash must be too.
_API_DEFAULTS: dict[str, Any] = {
    "language_code": "en_us",
    "language_detection": False,
    "language_confidence_threshold": 0,
    "punctuate": True,
    "format_text": True,
    "disfluencies": False,
    "filter_profanity": False,
    "speaker_labels": False,
    "multichannel": False,
}


class TranscriptionOptions(BaseModel):
    """The ``POST /v2/transcript`` options a manifest row or a run may set.

    ``None`` means "not sent": AssemblyAI's own default applies. ``speech_models`` is the one
    option that always has a value, because the API has no default model. Unknown names are
    rejected (``extra="forbid"``) so a typo such as ``speaker_label`` fails validation instead of
    silently transcribing without diarization.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    speech_models: tuple[str, ...] = Field(default=DEFAULT_SPEECH_MODELS, min_length=1)
    language_code: str | None = None
    language_detection: bool | None = None
    language_confidence_threshold: float | None = Field(default=None, ge=0, le=1)
    punctuate: bool | None = None
    format_text: bool | None = None
    disfluencies: bool | None = None
    filter_profanity: bool | None = None
    speaker_labels: bool | None = None
    speakers_expected: int | None = Field(default=None, ge=1)
    multichannel: bool | None = None
    audio_start_from: int | None = Field(default=None, ge=0)
    audio_end_at: int | None = Field(default=None, ge=0)
    speech_threshold: float | None = Field(default=None, ge=0, le=1)
    keyterms_prompt: tuple[str, ...] | None = None
    prompt: str | None = None
    webhook_url: str | None = None

    @field_validator("speech_models", "keyterms_prompt", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        # CSV cells (and lazy JSON writers) give lists as "a, b" or '["a", "b"]'.
        return _parse_list_cell(value) if isinstance(value, str) else value

    @field_validator("speech_models", "keyterms_prompt")
    @classmethod
    def _no_blank_entries(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(not v.strip() for v in value):
            raise ValueError("entries must not be empty")
        return value

    @field_validator("language_code", "prompt", "webhook_url")
    @classmethod
    def _blank_is_error(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_is_http(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _window_is_ordered(self) -> TranscriptionOptions:
        if (
            self.audio_start_from is not None
            and self.audio_end_at is not None
            and self.audio_end_at <= self.audio_start_from
        ):
            raise ValueError(
                f"audio_end_at ({self.audio_end_at}) must be greater than audio_start_from "
                f"({self.audio_start_from})"
            )
        return self

    def to_request_params(self) -> dict[str, Any]:
        """The options as JSON-ready ``POST /v2/transcript`` fields (``audio_url`` not included).

        ``None`` options are left out: an explicit ``null`` would override AssemblyAI's default.
        """
        return self.model_dump(mode="json", exclude_none=True)

    def merged(self, overrides: Mapping[str, Any]) -> TranscriptionOptions:
        """These options with ``overrides`` on top, validated again as a whole.

        Revalidating (rather than ``model_copy(update=...)``) catches wrong types and
        cross-field problems such as an ``audio_end_at`` before the default ``audio_start_from``.
        """
        if not overrides:
            return self
        base = self.model_dump(exclude_unset=True)
        return TranscriptionOptions.model_validate({**base, **overrides})


def options_hash(options: TranscriptionOptions) -> str:
    """A short, stable fingerprint of the effective options (16 hex chars of a sha256).

    Options left unset and options set to AssemblyAI's documented default hash alike, and so do
    options added to :class:`TranscriptionOptions` later (they default to unset): a hash only
    changes when the request would change what AssemblyAI does.
    """
    params = {
        k: v
        for k, v in options.to_request_params().items()
        if not (k in _API_DEFAULTS and v == _API_DEFAULTS[k])
    }
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


OPTION_COLUMNS: frozenset[str] = frozenset(TranscriptionOptions.model_fields)
_RESERVED_COLUMNS = ("source", "media_id")
KNOWN_COLUMNS: frozenset[str] = OPTION_COLUMNS | frozenset(_RESERVED_COLUMNS)


def _parse_list_cell(text: str) -> Any:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text  # let pydantic report "not a valid list" with the original text
    return [part.strip() for part in text.split(",") if part.strip()]


def _type_hint(name: str) -> str:
    """How to write a valid value for option ``name``, derived from its annotation."""
    annotation = TranscriptionOptions.model_fields[name].annotation
    args = set(typing.get_args(annotation)) - {type(None)}
    inner = args.pop() if len(args) == 1 else annotation
    if typing.get_origin(inner) is tuple:
        return 'write a comma-separated list (a, b) or a JSON list (["a", "b"])'
    return {
        bool: "write true or false",
        int: "write a whole number",
        float: "write a number",
        str: "write text",
    }.get(inner, f"write a value of type {inner}")


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a manifest, located as a user would look for it."""

    row: int | None  # None: about the manifest as a whole (e.g. it is empty)
    column: str | None
    problem: str
    fix: str

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        prefix = ", ".join(where) or "manifest"
        return f"{prefix}: {self.problem} — {self.fix}"


@dataclass(frozen=True, slots=True)
class InvalidRow:
    """A row skipped with ``on_invalid="skip"``; the flow records it as a failure."""

    row: int
    media_id: str | None  # None when the row has no usable source to derive it from
    source: str | None
    problems: tuple[Problem, ...]

    @property
    def reason(self) -> str:
        return "; ".join(
            (f"column {p.column}: " if p.column else "") + f"{p.problem} — {p.fix}"
            for p in self.problems
        )


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What resolving a source learned about its bytes, once: the pipeline and the ledger reuse
    it instead of stat'ing or HEADing the source again."""

    size: int
    fingerprint: str  # docs/tables.md: size:mtime_ns[:sha256=…] locally, s3:size:etag:modified
    modified_at: dt.datetime | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class MediaItem:
    """One thing to transcribe. Small, immutable and picklable: Prefect ships it between tasks."""

    media_id: str
    source: str  # absolute local path, or the URL exactly as written in the manifest
    kind: SourceKind
    options: TranscriptionOptions  # run defaults with this row's overrides applied
    row: int  # where it came from, numbered as in docs/manifest.md
    info: SourceInfo | None = None  # None for http(s) sources: their bytes are never seen

    @property
    def size(self) -> int | None:
        return self.info.size if self.info else None

    @property
    def fingerprint(self) -> str | None:
        return self.info.fingerprint if self.info else None

    @property
    def path(self) -> Path:
        """The local file (only for ``kind == SourceKind.local``)."""
        if self.kind is not SourceKind.local:
            raise ValueError(f"{self.media_id}: a {self.kind.value} source has no local path")
        return Path(self.source)

    @property
    def options_hash(self) -> str:
        return options_hash(self.options)


@dataclass(frozen=True)
class Manifest:
    items: list[MediaItem]
    invalid: list[InvalidRow] = field(default_factory=list)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[MediaItem]:
        return iter(self.items)


class ManifestError(VoxlakeError, ValueError):
    """The manifest cannot be used as written. Terminal: fix the manifest and run again.

    The message lists every problem, one per line; ``problems`` holds them as data.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        head = f"manifest {path}" if path is not None else "manifest"
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{head} has {len(problems)} {noun}:\n{lines}")


# --- reading ----------------------------------------------------------------------------------


@dataclass
class _RawRow:
    row: int
    values: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    unparsed: bool = False  # the line was not an object: report that, not a "missing source"


def read_manifest(
    path: str | os.PathLike[str],
    *,
    format: ManifestFormat | None = None,
    defaults: TranscriptionOptions | Mapping[str, Any] | None = None,
    on_invalid: Literal["fail", "skip"] = "fail",
    media_extensions: typing.Iterable[str] | str | None = None,
    s3: S3Options | Mapping[str, Any] | None = None,
    content_hash: bool = False,
) -> Manifest:
    """Read and fully validate a manifest, resolving every source once; no upload.

    Each item carries what resolving learned (:class:`SourceInfo`: size, fingerprint, ETag,
    modification time), so nothing downstream stats or HEADs a source again. With
    ``content_hash`` a sha256 of each local file joins its fingerprint (every file is read).

    ``path`` is a CSV/JSONL/Parquet file (format from the extension unless ``format`` is given),
    a directory, or a glob, locally or on S3 (``s3://bucket/list.csv``, ``s3://bucket/prefix/``,
    ``s3://bucket/calls/**/*.wav``). Directories, prefixes and globs keep the files whose
    extension is in ``media_extensions`` (default :data:`MEDIA_EXTENSIONS`). S3 sources are
    checked to exist with S3 requests (a HEAD per object, or one listing per folder for folders
    with many rows; see docs/s3.md); ``s3`` holds the non-secret S3 options (endpoint, region,
    profile). ``defaults`` are the run's transcription options; per-row option
    columns override them. With ``on_invalid="fail"`` any bad row raises one
    :class:`ManifestError` listing every problem; with ``"skip"`` bad rows are returned in
    :attr:`Manifest.invalid` and the rest run. Problems with the manifest as a whole (missing,
    unreadable, unknown column in a CSV/Parquet header, no valid rows) always raise.
    """
    manifest = _read(path, format, defaults, on_invalid, media_extensions, s3)
    if content_hash:
        return dataclasses.replace(manifest, items=_with_content_hashes(manifest.items))
    return manifest


def _read(
    path: str | os.PathLike[str],
    format: ManifestFormat | None,
    defaults: TranscriptionOptions | Mapping[str, Any] | None,
    on_invalid: Literal["fail", "skip"],
    media_extensions: typing.Iterable[str] | str | None,
    s3: S3Options | Mapping[str, Any] | None,
) -> Manifest:
    if on_invalid not in ("fail", "skip"):
        raise ValueError(f"on_invalid must be 'fail' or 'skip', not {on_invalid!r}")
    base_options = _resolve_defaults(defaults, path)
    text = os.fspath(path)
    extensions = _extensions(media_extensions, text)
    s3_options = S3Options.model_validate(dict(s3)) if isinstance(s3, Mapping) else s3
    if is_s3_url(text):
        return _read_s3_manifest(text, format, base_options, on_invalid, extensions, s3_options)
    p = Path(text)

    if p.is_dir() or (not p.exists() and _GLOB_CHARS & set(text)):
        if format is not None:
            raise ManifestError(
                text,
                [
                    Problem(
                        None,
                        None,
                        f"format={format!r} given for a directory or glob",
                        "leave format unset; it only applies to manifest files",
                    )
                ],
            )
        return _read_media_tree(text, base_options, on_invalid, extensions, s3_options)

    if not p.exists():
        raise ManifestError(
            text, [Problem(None, None, "file not found", "check the manifest path")]
        )
    fmt = format or _FORMAT_BY_EXTENSION.get(p.suffix.lower())
    if fmt is None:
        raise ManifestError(
            text,
            [
                Problem(
                    None,
                    None,
                    f"cannot tell the format from the extension {p.suffix!r}",
                    "name it .csv, .jsonl/.ndjson or .parquet, or pass "
                    "format='csv'|'jsonl'|'parquet'",
                )
            ],
        )
    if fmt not in ("csv", "jsonl", "parquet"):
        raise ValueError(f"format must be 'csv', 'jsonl' or 'parquet', not {fmt!r}")

    readers = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}
    header_problems, raw_rows = readers[fmt](p)
    # Header problems (an unknown column) concern every row: skipping them all would just run
    # nothing, so they always fail the manifest.
    return _validate_rows(
        p, p.parent, raw_rows, header_problems, base_options, on_invalid, s3=s3_options
    )


def _extensions(media_extensions: typing.Iterable[str] | str | None, path: str) -> frozenset[str]:
    try:
        return normalize_extensions(media_extensions) or MEDIA_EXTENSIONS
    except ValueError as exc:
        raise ManifestError(path, [Problem(None, None, str(exc), "pass e.g. wav,mp3")]) from None


class _S3ManifestFile:
    """An S3 manifest object with the little of the ``Path`` interface the readers use."""

    def __init__(self, fs: Any, url: str) -> None:
        self.fs = fs
        self.url = url
        self.suffix = os.path.splitext(url.rsplit("/", 1)[-1])[1]

    def open(self, mode: str = "r", newline: str | None = None, encoding: str | None = None):
        binary = self.fs.open(s3_path(self.url), "rb")
        if "b" in mode:
            return binary
        import io

        return io.TextIOWrapper(binary, encoding=encoding, newline=newline)

    def __str__(self) -> str:
        return self.url


def _read_s3_manifest(
    url: str,
    format: ManifestFormat | None,
    defaults: TranscriptionOptions,
    on_invalid: Literal["fail", "skip"],
    extensions: frozenset[str],
    s3: S3Options | None,
) -> Manifest:
    """A manifest file, prefix or glob on S3. Relative sources resolve against its folder."""
    bucket, key = split_s3(url)
    if not bucket:
        raise ManifestError(
            url, [Problem(None, None, "no bucket in the URL", "write s3://bucket/key")]
        )
    fs = s3_filesystem(s3)
    suffix = os.path.splitext(key.rsplit("/", 1)[-1])[1].lower()
    is_tree = (_GLOB_CHARS & set(key)) or (format is None and suffix not in _FORMAT_BY_EXTENSION)
    if is_tree:
        if format is not None:
            raise ManifestError(
                url,
                [Problem(None, None, f"format={format!r} given for an S3 prefix or glob", "")],
            )
        try:
            base, objects = list_s3_media(fs, url, extensions)
        except StorageError as exc:
            raise ManifestError(url, [Problem(None, None, str(exc), "fix the URL")]) from None
        if not objects:
            raise ManifestError(url, [_no_media_problem(extensions)])
        raw_rows = [_RawRow(n, {"source": o.url}) for n, o in enumerate(objects, start=1)]
        infos: dict[str, ObjectInfo | StorageError] = {o.url: o for o in objects}
        return _validate_rows(url, base, raw_rows, [], defaults, on_invalid, s3=s3, infos=infos)
    fmt = format or _FORMAT_BY_EXTENSION[suffix]
    if fmt not in ("csv", "jsonl", "parquet"):
        raise ValueError(f"format must be 'csv', 'jsonl' or 'parquet', not {fmt!r}")
    source = _S3ManifestFile(fs, url)
    readers = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}
    try:
        header_problems, raw_rows = readers[fmt](source)  # type: ignore[operator]
    except ManifestError:
        raise
    except Exception as exc:
        err = storage_error(exc, url, "reading the manifest")
        raise ManifestError(url, [Problem(None, None, str(err), "fix the manifest URL")]) from None
    folder = url[: url.rfind("/") + 1]
    return _validate_rows(url, folder, raw_rows, header_problems, defaults, on_invalid, s3=s3)


def _no_media_problem(extensions: frozenset[str]) -> Problem:
    exts = ", ".join(sorted(extensions))
    return Problem(
        None,
        None,
        "no media files found",
        f"check the path; media files end in one of: {exts} (--media-extensions to change)",
    )


def _resolve_defaults(
    defaults: TranscriptionOptions | Mapping[str, Any] | None, path: str | os.PathLike[str]
) -> TranscriptionOptions:
    if defaults is None:
        return TranscriptionOptions()
    if isinstance(defaults, TranscriptionOptions):
        return defaults
    try:
        return TranscriptionOptions.model_validate(dict(defaults))
    except ValidationError as exc:
        problems = [
            Problem(None, f"defaults.{_loc_name(e['loc'])}", e["msg"], "fix the run defaults")
            for e in exc.errors()
        ]
        raise ManifestError(path, problems) from None


def _loc_name(loc: tuple[Any, ...]) -> str:
    return str(loc[0]) if loc else "(options)"


def _unknown_column_problem(row: int | None, name: str) -> Problem:
    close = difflib.get_close_matches(name, sorted(KNOWN_COLUMNS), n=1)
    fix = (
        f"did you mean {close[0]!r}?"
        if close
        else "remove it or rename it to a known column (see docs/manifest.md)"
    )
    return Problem(row, name, "unknown column", fix)


def _read_csv(path: Path) -> tuple[list[Problem], list[_RawRow]]:
    # utf-8-sig: spreadsheet exports often start with a BOM that would otherwise become part of
    # the first column name ("\ufeffsource").
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return [], []
        names = [h.strip() for h in header]
        problems = [_unknown_column_problem(1, n) for n in names if n and n not in KNOWN_COLUMNS]
        seen: set[str] = set()
        for n in names:
            if n in seen:
                problems.append(Problem(1, n, "column appears twice", "keep one of them"))
            seen.add(n)
        if "source" not in names:
            problems.append(
                Problem(1, "source", "missing required column", "add a 'source' column")
            )
        rows: list[_RawRow] = []
        # Row numbers are records as a spreadsheet shows them: the header is row 1 and the first
        # data record row 2, even if a quoted cell spans several lines of the file.
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue  # blank line: still counted, so numbers match what the user sees
            raw = _RawRow(number, {})
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


def _read_jsonl(path: Path) -> tuple[list[Problem], list[_RawRow]]:
    rows: list[_RawRow] = []
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            raw = _RawRow(number, {})
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
                rows.append(raw)
                continue
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
                rows.append(raw)
                continue
            for key, value in obj.items():
                if key not in KNOWN_COLUMNS:
                    raw.problems.append(_unknown_column_problem(number, key))
                elif value is not None:
                    raw.values[key] = value
            rows.append(raw)
    return [], rows


def _read_parquet(path: Path) -> tuple[list[Problem], list[_RawRow]]:
    import pyarrow.parquet as pq  # imported lazily: only Parquet manifests need it

    try:
        table = pq.read_table(path if isinstance(path, Path) else path.open("rb"))
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise ManifestError(
            path, [Problem(None, None, f"cannot read Parquet: {exc}", "check the file")]
        ) from exc
    # Parquet has a schema, not a header row: a column problem is reported without a row.
    problems = [
        _unknown_column_problem(None, n) for n in table.column_names if n not in KNOWN_COLUMNS
    ]
    if "source" not in table.column_names:
        problems.append(Problem(None, "source", "missing required column", "add a 'source' column"))
    keep = [n for n in table.column_names if n in KNOWN_COLUMNS]
    rows = [
        _RawRow(i + 1, {k: v for k, v in record.items() if v is not None})
        for i, record in enumerate(table.select(keep).to_pylist())
    ]
    return problems, rows


def _validate_rows(
    manifest_path: Path | str,
    base_dir: Path | str,
    raw_rows: list[_RawRow],
    header_problems: list[Problem],
    defaults: TranscriptionOptions,
    on_invalid: Literal["fail", "skip"],
    *,
    s3: S3Options | None = None,
    infos: Mapping[str, ObjectInfo | StorageError] | None = None,
) -> Manifest:
    items: list[MediaItem] = []
    invalid: list[InvalidRow] = []
    first_row_of: dict[str, int] = {}
    # Most rows carry no or the same overrides; sharing the merged options object keeps a
    # 1M-row manifest small and validates each distinct combination once.
    options_cache: dict[str, TranscriptionOptions | list[Problem]] = {}
    # An S3 manifest's folder is an s3:// URL ending in "/": relative sources are keys there.
    base = base_dir if isinstance(base_dir, str) and is_s3_url(base_dir) else _abs_base(base_dir)
    s3_infos = _check_s3_sources(raw_rows, base, s3, infos)

    for raw in raw_rows:
        problems = list(raw.problems)
        source_text = raw.values.get("source")
        media_id: str | None = None
        kind: SourceKind | None = None
        resolved: str | None = None
        info: SourceInfo | None = None

        if raw.unparsed:
            pass
        elif source_text is None or (isinstance(source_text, str) and not source_text.strip()):
            problems.append(
                Problem(
                    raw.row,
                    "source",
                    "missing or empty source",
                    "write a local path or an http(s):// URL",
                )
            )
        elif not isinstance(source_text, str):
            problems.append(
                Problem(
                    raw.row,
                    "source",
                    f"expected text, got {type(source_text).__name__}",
                    "write the path or URL as a string",
                )
            )
        else:
            kind, resolved, derived_id, source_problem, info = _classify_source(
                source_text.strip(), base, raw.row, s3_infos
            )
            if source_problem is not None:
                problems.append(source_problem)
            media_id = derived_id

        explicit_id = raw.values.get("media_id")
        if explicit_id is not None:
            if isinstance(explicit_id, (str, int)) and not isinstance(explicit_id, bool):
                explicit_id = str(explicit_id).strip()
                if explicit_id:
                    media_id = explicit_id
            else:
                problems.append(
                    Problem(
                        raw.row,
                        "media_id",
                        f"expected text, got {type(explicit_id).__name__}",
                        "write the id as a string",
                    )
                )

        if media_id is not None:
            first = first_row_of.get(media_id)
            if first is None:
                first_row_of[media_id] = raw.row
            else:
                problems.append(
                    Problem(
                        raw.row,
                        "media_id",
                        f"duplicate media_id {media_id!r} (also row {first})",
                        "give each row a unique media_id, or remove the duplicate row",
                    )
                )

        overrides = {k: v for k, v in raw.values.items() if k in OPTION_COLUMNS}
        options = _merge_options(defaults, overrides, raw.row, options_cache)
        if isinstance(options, list):
            problems.extend(options)

        if problems:
            invalid.append(
                InvalidRow(
                    raw.row,
                    media_id,
                    source_text if isinstance(source_text, str) else None,
                    tuple(problems),
                )
            )
            continue
        assert media_id is not None and kind is not None and resolved is not None
        assert not isinstance(options, list)
        items.append(MediaItem(media_id, resolved, kind, options, raw.row, info))

    all_problems = header_problems + [p for bad in invalid for p in bad.problems]
    if header_problems or (invalid and on_invalid == "fail"):
        raise ManifestError(manifest_path, all_problems)
    if not items:
        if not invalid:
            raise ManifestError(
                manifest_path, [Problem(None, None, "no rows", "add at least one media item")]
            )
        raise ManifestError(
            manifest_path,
            [Problem(None, None, "every row is invalid", "fix the rows below"), *all_problems],
        )
    return Manifest(items, invalid, manifest_path if isinstance(manifest_path, Path) else None)


def _s3_source_url(text: str, base: str) -> str | None:
    """The s3:// URL a source cell names, or None (local, http, or unresolvable)."""
    if is_s3_url(text):
        return text
    scheme = urlsplit(text).scheme.lower()
    if is_s3_url(base) and (scheme == "" or len(scheme) == 1):
        return join_s3(base, text)
    return None


def _check_s3_sources(
    raw_rows: list[_RawRow],
    base: str,
    s3: S3Options | None,
    known: Mapping[str, ObjectInfo | StorageError] | None,
) -> dict[str, ObjectInfo | StorageError]:
    """Metadata of every S3 object the rows name, fetched in batch before row validation."""
    infos = dict(known or {})
    wanted = []
    for raw in raw_rows:
        text = raw.values.get("source")
        if isinstance(text, str) and text.strip():
            url = _s3_source_url(text.strip(), base)
            if url is not None and url not in infos and split_s3(url)[1]:
                wanted.append(url)
    if wanted:
        infos.update(stat_s3_objects(s3_filesystem(s3), wanted))
    return infos


def _merge_options(
    defaults: TranscriptionOptions,
    overrides: dict[str, Any],
    row: int,
    cache: dict[str, TranscriptionOptions | list[Problem]],
) -> TranscriptionOptions | list[Problem]:
    if not overrides:
        return defaults
    key = json.dumps(overrides, sort_keys=True, default=repr)
    hit = cache.get(key)
    if hit is None:
        try:
            hit = defaults.merged(overrides)
        except ValidationError as exc:
            hit = [
                Problem(
                    None,
                    _loc_name(e["loc"]),
                    _describe_error(e, overrides),
                    _type_hint(str(e["loc"][0])) if e["loc"] else "fix the option values",
                )
                for e in exc.errors()
            ]
        cache[key] = hit
    if isinstance(hit, list):
        # The cache holds row-less problems; stamp this row on them.
        return [Problem(row, p.column, p.problem, p.fix) for p in hit]
    return hit


def _describe_error(error: Mapping[str, Any], overrides: Mapping[str, Any]) -> str:
    loc = error["loc"]
    if not loc:
        return str(error["msg"]).removeprefix("Value error, ")
    name = loc[0]
    shown = overrides.get(name, error.get("input"))
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{shown!r} is not valid ({msg})"


_Classified = tuple[SourceKind | None, str | None, str | None, Problem | None, SourceInfo | None]


def _classify_source(
    text: str,
    base: str,
    row: int,
    s3_infos: Mapping[str, ObjectInfo | StorageError] | None = None,
) -> _Classified:
    """(kind, resolved source, derived media_id, problem, source info) for one source cell."""
    if is_s3_url(text) or (is_s3_url(base) and not urlsplit(text).scheme):
        return _classify_s3(text, base, row, s3_infos or {})
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    # A one-letter "scheme" is a Windows drive (C:\media\a.wav), not a URL.
    if scheme in ("", "file") or len(scheme) == 1:
        local = parts.path if scheme == "file" else os.path.expanduser(text)
        return _classify_local(local, base, row)
    if scheme in ("http", "https"):
        if not parts.netloc:
            return (
                None,
                None,
                None,
                Problem(
                    row,
                    "source",
                    f"URL {text!r} has no host",
                    "write a full URL such as https://example.com/a.mp3",
                ),
                None,
            )
        # Query strings are often presigned signatures that change every run; the id must not.
        media_id = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return SourceKind.http, text, media_id, None, None
    return (
        None,
        None,
        None,
        Problem(
            row,
            "source",
            f"unsupported scheme {scheme!r} in {text!r}",
            "use a local path, an s3:// URL or an http(s) URL",
        ),
        None,
    )


def _classify_s3(
    text: str, base: str, row: int, s3_infos: Mapping[str, ObjectInfo | StorageError]
) -> _Classified:
    url = text if is_s3_url(text) else join_s3(base, text)
    if url is None:
        problem = Problem(
            row, "source", f"{text!r} climbs above the bucket of {base}", "fix the relative key"
        )
        return None, None, None, problem, None
    bucket, key = split_s3(url)
    if not bucket or not key or key.endswith("/"):
        problem = Problem(
            row,
            "source",
            f"{url!r} does not name an object",
            "write s3://bucket/key (list a whole prefix as the manifest itself)",
        )
        return None, None, None, problem, None
    # Like local paths: relative to the manifest's (or listing's) folder, else the full URL.
    media_id = url[len(base) :] if is_s3_url(base) and url.startswith(base) else url
    info = s3_infos.get(url)
    if isinstance(info, StorageError):
        return SourceKind.s3, url, media_id, Problem(row, "source", str(info), _s3_fix(info)), None
    if info is not None and not info.is_file:
        problem = Problem(
            row, "source", f"{url} is a folder", "use an S3 prefix manifest for whole folders"
        )
        return SourceKind.s3, url, media_id, problem, None
    if info is not None and info.size == 0:
        problem = Problem(
            row, "source", f"object is empty (0 bytes): {url}", "remove the row or replace it"
        )
        return SourceKind.s3, url, media_id, problem, None
    return SourceKind.s3, url, media_id, None, _s3_info(info)


def _s3_fix(error: StorageError) -> str:
    # The error text already says what to check; the fix column says what to do with the row.
    return "fix the row or the object" if not error.transient else "run again later"


def _classify_local(path: str, base: str, row: int) -> _Classified:
    # Strings and one os.stat, not pathlib: this runs once per row of million-row manifests.
    # Lexical normalisation (not realpath): ids must not change when a symlink is re-pointed.
    absolute = os.path.normpath(os.path.join(base, path))
    media_id = _local_media_id(absolute, base)
    try:
        st = os.stat(absolute)
    except (FileNotFoundError, NotADirectoryError):
        problem = Problem(
            row,
            "source",
            f"file not found: {absolute}",
            f"check the path (relative paths are resolved against {base})",
        )
        return SourceKind.local, absolute, media_id, problem, None
    except OSError as exc:
        problem = Problem(row, "source", f"cannot read {absolute}: {exc.strerror}", "fix access")
        return SourceKind.local, absolute, media_id, problem, None
    if not stat.S_ISREG(st.st_mode):
        problem = Problem(
            row,
            "source",
            f"not a regular file: {absolute}",
            "point at a media file; use a directory manifest for whole folders",
        )
        return SourceKind.local, absolute, media_id, problem, None
    if st.st_size == 0:
        problem = Problem(
            row,
            "source",
            f"file is empty (0 bytes): {absolute}",
            "remove the row or replace the file",
        )
        return SourceKind.local, absolute, media_id, problem, None
    return SourceKind.local, absolute, media_id, None, _local_info(st)


def _local_info(st: os.stat_result) -> SourceInfo:
    modified = dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, dt.UTC)
    return SourceInfo(st.st_size, f"{st.st_size}:{st.st_mtime_ns}", modified)


def _s3_info(info: ObjectInfo | StorageError | None) -> SourceInfo | None:
    # Rows are checked in batch first (_check_s3_sources), so info is normally there.
    if not isinstance(info, ObjectInfo):
        return None
    return SourceInfo(info.size, info.fingerprint, info.last_modified, info.etag)


def _with_content_hashes(items: list[MediaItem]) -> list[MediaItem]:
    """Local items with ``:sha256=<hex>`` appended to their fingerprint (reads every file)."""

    def hashed(item: MediaItem) -> MediaItem:
        if item.kind is not SourceKind.local or item.info is None:
            return item
        digest = hashlib.sha256()
        with open(item.source, "rb") as fh:
            while chunk := fh.read(1024 * 1024):
                digest.update(chunk)
        info = dataclasses.replace(
            item.info, fingerprint=f"{item.info.fingerprint}:sha256={digest.hexdigest()}"
        )
        return dataclasses.replace(item, info=info)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(hashed, items))


def _local_media_id(absolute: str, base: str) -> str:
    """The path relative to the manifest folder (POSIX separators); absolute if outside it."""
    prefix = base if base.endswith(os.sep) else base + os.sep
    rel = absolute[len(prefix) :] if absolute.startswith(prefix) else absolute
    return rel.replace(os.sep, "/")


def _abs_base(base_dir: Path) -> str:
    return os.path.normpath(os.path.abspath(base_dir))


def _read_media_tree(
    text: str,
    defaults: TranscriptionOptions,
    on_invalid: Literal["fail", "skip"],
    extensions: frozenset[str] = MEDIA_EXTENSIONS,
    s3: S3Options | None = None,
) -> Manifest:
    p = Path(text)
    files: list[str] = []
    if p.is_dir():
        base = p
        for folder, dirs, names in os.walk(_abs_base(p)):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # .git, .cache, ...
            files.extend(os.path.join(folder, n) for n in names if is_media_name(n, extensions))
    else:
        # The folder part before the first wildcard anchors relative media_ids.
        head: list[str] = []
        for part in p.parts:
            if _GLOB_CHARS & set(part):
                break
            head.append(part)
        base = Path(*head) if head else Path(".")
        files = [
            os.path.normpath(os.path.abspath(m))
            for m in glob.iglob(text, recursive=True)  # like a shell, ** skips dot folders
            if is_media_name(os.path.basename(m), extensions) and os.path.isfile(m)
        ]
    files.sort()
    if not files:
        raise ManifestError(text, [_no_media_problem(extensions)])
    # Rows are the files in sorted path order, numbered from 1. They go through the same
    # validation as manifest rows, so e.g. an empty file is reported the same way.
    raw_rows = [_RawRow(n, {"source": str(f)}) for n, f in enumerate(files, start=1)]
    return _validate_rows(Path(text), base, raw_rows, [], defaults, on_invalid)
