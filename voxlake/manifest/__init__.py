"""Reading and validating manifests into :class:`MediaItem`s.

A manifest says *what* to transcribe: one row per media item. It can be a CSV, JSONL or Parquet
file, a directory (every media file below it) or a glob (``data/**/*.wav``), locally or on S3.
Everything is validated here, before any upload, so a typo in row 9,000 fails the run in a
second instead of after 8,999 uploads. The user-facing rules (columns, options, row numbering,
the ``media_id`` rule) are documented in ``docs/manifest.md``; keep the two in sync.

The package: :mod:`~voxlake.manifest.options` (the transcription options: validation, request,
hash), :mod:`~voxlake.manifest.formats` (the file formats), :mod:`~voxlake.manifest.resolve`
(source cells, listings and metadata over fsspec), :mod:`~voxlake.manifest.items` (the results).
This module reads a manifest with them and validates its rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from voxlake.manifest.formats import FORMAT_BY_EXTENSION, ManifestFormat, RawRow, read_rows
from voxlake.manifest.items import (
    InvalidRow,
    Manifest,
    ManifestError,
    MediaItem,
    Problem,
    SourceInfo,
    SourceKind,
)
from voxlake.manifest.options import (
    DEFAULT_SPEECH_MODELS,
    OPTION_COLUMNS,
    TranscriptionOptions,
    option_path,
    options_hash,
    type_hint,
    unknown_option_fix,
)
from voxlake.manifest.resolve import (
    MEDIA_EXTENSIONS,
    NotAFileError,
    Stat,
    check_listed,
    filesystem,
    fs_error,
    fs_path,
    is_local,
    list_media,
    normalize_extensions,
    resolve_sources,
    stat_many,
)
from voxlake.storage import S3NotFoundError, S3Options, StorageError, is_s3_url, split_s3

__all__ = [
    "DEFAULT_SPEECH_MODELS",
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
    "option_problems",
    "options_hash",
    "read_manifest",
]


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
    shown: Path | str = text if is_s3_url(text) else Path(text)
    if is_s3_url(text):
        if not split_s3(text)[0]:
            problem = Problem(None, None, "no bucket in the URL", "write s3://bucket/key")
            raise ManifestError(text, [problem])
        location = text
    else:
        location = os.path.abspath(text)
    fs = filesystem(location, s3_options)

    if format is None and _names_media(location, extensions):
        one = _one_media_file(fs, location, shown, base_options)
        if one is not None:
            return one
    if _is_listing(fs, location, format):
        if format is not None:
            problem = Problem(
                None,
                None,
                f"format={format!r} given for a directory, prefix or glob",
                "leave format unset; it only applies to manifest files",
            )
            raise ManifestError(text, [problem])
        try:
            base, found = list_media(fs, location, extensions)
        except FileNotFoundError:
            raise ManifestError(text, [_missing_problem(text, location)]) from None
        except (OSError, StorageError) as exc:
            raise ManifestError(text, [Problem(None, None, str(exc), "fix the URL")]) from None
        if not found:
            raise ManifestError(text, [_no_media_problem(extensions)])
        return _listed_items(shown, _folder(fs, base), found, base_options, on_invalid)

    try:
        with fs.open(fs_path(location), "rb") as binary:
            fmt = format or _format_from_name(text, location)
            header_problems, raw_rows = read_rows(binary, fmt)
    except ManifestError:
        raise
    except Exception as exc:
        err = fs_error(fs, exc, location, "reading the manifest")
        if isinstance(err, FileNotFoundError):
            problem = _missing_problem(text, location)
        elif isinstance(err, StorageError):
            problem = Problem(None, None, str(err), "fix the manifest URL")
        else:
            raise
        raise ManifestError(text, [problem]) from None
    # Header problems (an unknown column) concern every row: skipping them all would just run
    # nothing, so they always fail the manifest.
    folder = _folder(fs, location[: location.rfind("/") + 1])
    return _validate_rows(
        shown, folder, raw_rows, header_problems, base_options, on_invalid, s3_options
    )


def _is_listing(fs: Any, location: str, format: ManifestFormat | None) -> bool:
    """Whether ``location`` names media to list (a folder, S3 prefix or glob), not a manifest."""
    path = fs_path(location)
    if any(c in location for c in "*?[") and not fs.exists(path):
        return True
    if format is None and _suffix(location) not in FORMAT_BY_EXTENSION:
        # An S3 prefix need not exist as an object: what is not a file is listed.
        return not fs.isfile(path)
    return bool(fs.isdir(path))


def _names_media(location: str, extensions: frozenset[str]) -> bool:
    """Whether ``location`` reads as one media file: a media extension, not a manifest's."""
    suffix = _suffix(location)
    return (
        suffix not in FORMAT_BY_EXTENSION
        and suffix[1:] in extensions
        and not any(c in location for c in "*?[")
    )


def _one_media_file(
    fs: Any, location: str, shown: Path | str, defaults: TranscriptionOptions
) -> Manifest | None:
    """The media file at ``location`` as a one-item manifest; None if it is a folder.

    Its media_id is its name, as if its folder were listed. What is wrong with it concerns the
    whole run, so it is reported without a row number.
    """
    found = stat_many(fs, [location])
    stat = found[location]
    if isinstance(stat, NotAFileError):
        return None  # a folder named like a file ("take.wav/"): listed as folders are
    if isinstance(stat, FileNotFoundError | S3NotFoundError):
        raise ManifestError(shown, [_missing_problem(os.fspath(shown), location)])
    folder = _folder(fs, location[: location.rfind("/") + 1])
    r = check_listed(location, folder, 1, found)
    if r.problem is not None:
        raise ManifestError(shown, [Problem(None, None, r.problem.problem, "check the file")])
    assert r.media_id is not None and r.kind is not None
    item = MediaItem(r.media_id, location, r.kind, defaults, 1, r.info)
    return Manifest([item], [], shown if isinstance(shown, Path) else None)


def _missing_problem(text: str, location: str) -> Problem:
    """Nothing at the path the user gave: say where it was looked for, and what it may be."""
    if is_s3_url(text):
        what, where = "no such object or prefix", ""
    else:
        what = "no such file or folder"
        where = "" if os.path.normpath(text) == location else f" ({location})"
    return Problem(
        None,
        None,
        f"{what}{where}",
        "check the path: give a media file, a folder, a glob, or a manifest (.csv, .jsonl, "
        ".parquet); see docs/manifest.md",
    )


def _suffix(location: str) -> str:
    return os.path.splitext(location.rsplit("/", 1)[-1])[1].lower()


def _format_from_name(shown: str, location: str) -> ManifestFormat:
    fmt = FORMAT_BY_EXTENSION.get(_suffix(location))
    if fmt is None:
        suffix = os.path.splitext(location.rsplit("/", 1)[-1])[1]
        # Says what a user can do from the CLI or a deployment: neither has read_manifest's
        # ``format`` argument, and ``--media-extensions`` is how a file counts as media.
        problem = Problem(
            None,
            None,
            f"neither a manifest nor a media file (extension {suffix!r})",
            "a manifest's name ends in .csv, .jsonl, .ndjson or .parquet; to transcribe the "
            f"file as media, pass --media-extensions {suffix[1:] or 'EXT'}",
        )
        raise ManifestError(shown, [problem])
    return fmt


def _folder(fs: Any, folder: str) -> str:
    """The folder that relative sources resolve against and media_ids are relative to.

    An S3 folder is a URL ending in ``/``; a local one is a normalised absolute path, which
    error messages show as the user's shell would.
    """
    return os.path.normpath(folder) if is_local(fs) else folder


def _extensions(media_extensions: typing.Iterable[str] | str | None, path: str) -> frozenset[str]:
    try:
        return normalize_extensions(media_extensions) or MEDIA_EXTENSIONS
    except ValueError as exc:
        raise ManifestError(path, [Problem(None, None, str(exc), "pass e.g. wav,mp3")]) from None


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
    values = dict(defaults)
    try:
        return TranscriptionOptions.model_validate(values)
    except ValidationError as exc:
        # The run's options (voxlake run --option, the flow's `options`): no row, same words.
        problems = [
            Problem(None, None, f"option {p.column}: {p.problem}", p.fix)
            for p in option_problems(exc, values)
        ]
        raise ManifestError(path, problems) from None


def option_problems(exc: ValidationError, values: Mapping[str, Any]) -> list[Problem]:
    """The problems of options ``values`` that failed validation with ``exc``: each names the
    option (``column``), what is wrong with the value and what to write instead."""
    return [
        Problem(None, _loc_name(e["loc"]), _describe_error(e, values), _fix(e))
        for e in exc.errors()
    ]


def _loc_name(loc: tuple[Any, ...]) -> str:
    return str(loc[0]) if loc else "(options)"


def _fix(error: Mapping[str, Any]) -> str:
    """What to write instead, for a validation error of the options."""
    if not error["loc"]:
        return "fix the option values"
    if error["type"] == "extra_forbidden" and len(error["loc"]) == 1:
        return unknown_option_fix(str(error["loc"][0]))
    if error["type"] == "missing":
        return f"add it: {type_hint(error['loc'])}"
    return type_hint(error["loc"], error.get("input"))


def _validate_rows(
    manifest_path: Path | str,
    base: str,
    raw_rows: list[RawRow],
    header_problems: list[Problem],
    defaults: TranscriptionOptions,
    on_invalid: Literal["fail", "skip"],
    s3: S3Options | None,
    known: Mapping[str, Stat] | None = None,
) -> Manifest:
    items: list[MediaItem] = []
    invalid: list[InvalidRow] = []
    first_row_of: dict[str, int] = {}
    # Most rows carry no or the same overrides; sharing the merged options object keeps a
    # 1M-row manifest small and validates each distinct combination once.
    options_cache: dict[str, TranscriptionOptions | list[Problem]] = {}
    cells = [
        (raw.row, source.strip())
        for raw in raw_rows
        if not raw.unparsed
        and isinstance(source := raw.values.get("source"), str)
        and source.strip()
    ]
    resolved = resolve_sources(cells, base, s3, known)

    for raw in raw_rows:
        problems = list(raw.problems)
        source_text = raw.values.get("source")
        media_id: str | None = None
        r = resolved.get(raw.row)

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
        elif r is not None:
            if r.problem is not None:
                problems.append(r.problem)
            media_id = r.media_id

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
        assert media_id is not None and r is not None and r.kind is not None
        assert r.source is not None and not isinstance(options, list)
        items.append(MediaItem(media_id, r.source, r.kind, options, raw.row, r.info))
    return _finish(manifest_path, items, invalid, header_problems, on_invalid)


def _listed_items(
    manifest_path: Path | str,
    base: str,
    found: Mapping[str, Stat],
    defaults: TranscriptionOptions,
    on_invalid: Literal["fail", "skip"],
) -> Manifest:
    """The files a folder, glob or prefix listed: rows in sorted path order, from 1.

    A listed file can only be wrong in what its metadata shows (vanished, empty, unreadable),
    reported as for a manifest row; the rest of row validation has nothing to check. Kept apart
    from :func:`_validate_rows` because its per-row garbage, for 100,000 files, left the
    process ~60 MB larger for the rest of the run.
    """
    items: list[MediaItem] = []
    invalid: list[InvalidRow] = []
    for row, url in enumerate(found, start=1):
        r = check_listed(url, base, row, found)
        if r.problem is not None:
            invalid.append(InvalidRow(row, r.media_id, url, (r.problem,)))
            continue
        assert r.media_id is not None and r.kind is not None
        items.append(MediaItem(r.media_id, url, r.kind, defaults, row, r.info))
    return _finish(manifest_path, items, invalid, [], on_invalid)


def _finish(
    manifest_path: Path | str,
    items: list[MediaItem],
    invalid: list[InvalidRow],
    header_problems: list[Problem],
    on_invalid: Literal["fail", "skip"],
) -> Manifest:
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
            hit = option_problems(exc, overrides)
        cache[key] = hit
    if isinstance(hit, list):
        # The cache holds row-less problems; stamp this row on them.
        return [Problem(row, p.column, p.problem, p.fix) for p in hit]
    return hit


def _describe_error(error: Mapping[str, Any], overrides: Mapping[str, Any]) -> str:
    loc = error["loc"]
    msg = str(error["msg"]).removeprefix("Value error, ")
    if not loc:
        return msg
    if error["type"] == "extra_forbidden":
        return "unknown option" if len(loc) == 1 else f"{option_path(loc)}: unknown key"
    if error["type"] == "missing":
        return f"{option_path(loc)} is missing"
    if error["type"] == "literal_error" and str(msg).count("'") > 16:
        # A long enumeration (PII policies, language codes): the fix names the closest one.
        msg = "not one of the values AssemblyAI accepts"
    if len(loc) > 1:
        # Inside a nested option: say where, and the value there, not the whole object.
        return f"{option_path(loc)}: {error.get('input')!r} is not valid ({msg})"
    shown = overrides.get(loc[0], error.get("input"))
    return f"{shown!r} is not valid ({msg})"


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
