"""Sources: what a manifest's source cells name, what lists media, and what is there.

Local paths and ``s3://`` URLs go through the same code on an fsspec filesystem: a folder or a
glob is listed with ``find`` / ``glob`` (a local folder with ``os.scandir``, one stat per file),
and :func:`stat_many` learns every named file's size and fingerprint in one batch. Two things
differ by filesystem, each in one place: how a file's metadata becomes a :class:`SourceInfo`
(fingerprints are ledger keys, docs/tables.md), and what an error is called (S3 errors are
translated into :class:`~voxlake.storage.StorageError`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from collections import defaultdict
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fsspec.implementations.local import LocalFileSystem

from voxlake.errors import VoxlakeError
from voxlake.manifest.items import Problem, SourceInfo, SourceKind
from voxlake.sources import ObjectInfo
from voxlake.storage import (
    S3AccessDeniedError,
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
    "LIST_THRESHOLD",
    "MEDIA_EXTENSIONS",
    "Resolved",
    "check_listed",
    "filesystem",
    "list_media",
    "normalize_extensions",
    "resolve_sources",
    "stat_many",
]

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

#: More rows than this in one remote folder are checked with one listing of the folder (1,000
#: keys per S3 request) instead of one HEAD request per object.
LIST_THRESHOLD = 100
STAT_WORKERS = 32

_WILDCARD = re.compile(r"[*?\[]")

# What each source's metadata said, or why there is none.
Stat = SourceInfo | Exception


class NotAFileError(VoxlakeError, OSError):
    """The path names a folder (or a device, a socket...), not a file."""


# --- extensions -------------------------------------------------------------------------------


def normalize_extensions(extensions: Iterable[str] | str | None) -> frozenset[str] | None:
    """``["WAV", ".mp3"]`` or ``"wav,mp3"`` -> ``{"wav", "mp3"}``; ``None`` stays ``None``."""
    if extensions is None:
        return None
    if isinstance(extensions, str):
        extensions = extensions.split(",")
    cleaned = frozenset(e.strip().lstrip(".").lower() for e in extensions if e.strip(" ."))
    if not cleaned:
        raise ValueError("media_extensions must name at least one extension, e.g. wav,mp3")
    return cleaned


def _is_media(relative: str, extensions: frozenset[str]) -> bool:
    # Dot files are skipped (macOS writes "._name.wav" AppleDouble files that look like media),
    # and so is everything below a dot folder (.git, .cache, ...), as a shell's ** does.
    *folders, name = relative.split("/")
    if name.startswith(".") or any(f.startswith(".") for f in folders):
        return False
    return os.path.splitext(name)[1][1:].lower() in extensions


# --- filesystems ------------------------------------------------------------------------------


def filesystem(location: str, s3: S3Options | None) -> Any:
    """The fsspec filesystem that holds ``location`` (an absolute path or an s3:// URL)."""
    return s3_filesystem(s3) if is_s3_url(location) else LocalFileSystem()


def is_local(fs: Any) -> bool:
    return isinstance(fs, LocalFileSystem)


def fs_path(url: str) -> str:
    """The filesystem's own name for ``url``: ``bucket/key`` on S3, the path itself locally."""
    return s3_path(url) if is_s3_url(url) else url


def _url(fs: Any, name: str) -> str:
    return name if is_local(fs) else f"s3://{name}"


def fs_error(fs: Any, exc: Exception, url: str, action: str) -> Exception:
    """``exc`` in the filesystem's terms: S3 errors become StorageErrors (terminal or not)."""
    return exc if is_local(fs) else storage_error(exc, url, action)


def _local_info(st: os.stat_result) -> SourceInfo:
    # The fingerprint (a ledger key) keeps the mtime's nanoseconds; fsspec's info() has a float.
    modified = dt.datetime.fromtimestamp(st.st_mtime_ns / 1e9, dt.UTC)
    return SourceInfo(st.st_size, f"{st.st_size}:{st.st_mtime_ns}", modified)


def _describe(fs: Any, url: str, raw: Mapping[str, Any] | None) -> Stat:
    """A :class:`SourceInfo` from what the filesystem said of ``url`` (``raw``: fsspec info)."""
    if is_local(fs):
        try:
            st = os.stat(url)
        except OSError as exc:
            return exc
        return _local_info(st) if stat.S_ISREG(st.st_mode) else NotAFileError(url)
    if raw is None:
        try:
            raw = fs.info(fs_path(url))
        except Exception as exc:
            return fs_error(fs, exc, url, "checking")
    info = ObjectInfo.from_s3fs(url, raw)
    if not info.is_file:
        return NotAFileError(url)
    return SourceInfo(info.size, info.fingerprint, info.last_modified, info.etag)


# --- listing and checking ---------------------------------------------------------------------


def list_media(fs: Any, target: str, extensions: frozenset[str]) -> tuple[str, dict[str, Stat]]:
    """Every media file below the folder ``target`` or matching the glob ``target``.

    Returns ``(base, {url: metadata})``: ``base`` is the folder URL that media_ids are relative
    to (the folder, or the glob's part before its first wildcard), the files sorted by URL. An
    S3 listing reads ListObjectsV2 pages of 1,000 keys, and what it learns is kept: the objects
    are not HEADed again.
    """
    wildcard = _WILDCARD.search(target)
    if is_local(fs) and not wildcard:
        base = target if target.endswith("/") else target + "/"
        try:
            return base, _walk_local(base, extensions)
        except OSError as exc:
            raise fs_error(fs, exc, target, "listing") from None
    try:
        if wildcard:
            head = target[: wildcard.start()]
            base = head[: head.rfind("/") + 1]
            found = fs.glob(fs_path(target), detail=True)
        else:
            base = target if target.endswith("/") else target + "/"
            found = fs.find(fs_path(base), detail=True, withdirs=False)
    except Exception as exc:
        raise fs_error(fs, exc, target, "listing") from None
    files = sorted(
        url
        for url, raw in ((_url(fs, name), raw) for name, raw in found.items())
        if raw.get("type", "file") == "file" and _is_media(url.removeprefix(base), extensions)
    )
    return base, {url: _describe(fs, url, found[fs_path(url)]) for url in files}


def _walk_local(base: str, extensions: frozenset[str]) -> dict[str, Stat]:
    """The media files below the local folder ``base``, each stat'ed once, sorted by path.

    os.scandir instead of fsspec's ``find``, which stats every file for its info dict, after
    which a second stat was needed for the nanosecond mtime the fingerprint keeps.
    """
    found: dict[str, Stat] = {}
    seen: set[tuple[int, int]] = set()  # folders by (device, inode): symlinks may loop
    pending = [base.rstrip("/") or "/"]
    while pending:
        folder = pending.pop()
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_dir():  # follows symlinks, as fsspec's find does
                        if not entry.name.startswith("."):  # as _is_media skips dot folders
                            pending.append(entry.path)
                    elif _is_media(entry.name, extensions):
                        entry_stat = entry.stat()
                        if stat.S_ISREG(entry_stat.st_mode):
                            found[entry.path] = _local_info(entry_stat)
                except OSError as exc:  # vanished or unreadable since the listing: reported
                    found[entry.path] = exc
    return dict(sorted(found.items()))


def stat_many(
    fs: Any, urls: Iterable[str], *, list_threshold: int = LIST_THRESHOLD
) -> dict[str, Stat]:
    """Metadata (or the error) of each file, in as few requests as is reasonable.

    Remote files are grouped by folder. A folder with more than ``list_threshold`` requested
    files is listed once (1,000 keys per S3 request); the others get one HEAD each, 32 at a
    time. A folder that cannot be listed (no s3:ListBucket) falls back to HEAD requests.
    """
    wanted = list(dict.fromkeys(urls))
    if is_local(fs):
        # A local stat costs microseconds: listings and threads would only add overhead.
        return {url: _describe(fs, url, None) for url in wanted}
    by_folder: dict[str, list[str]] = defaultdict(list)
    for url in wanted:
        by_folder[url.rsplit("/", 1)[0]].append(url)
    results: dict[str, Stat] = {}
    to_head: list[str] = []
    for folder, members in by_folder.items():
        if len(members) <= list_threshold:
            to_head.extend(members)
            continue
        try:
            listed = fs.ls(fs_path(folder + "/"), detail=True)
        except Exception as exc:
            err = fs_error(fs, exc, folder + "/", "listing")
            if isinstance(err, S3AccessDeniedError):
                to_head.extend(members)  # GetObject may still be allowed
                continue
            results.update(dict.fromkeys(members, err))
            continue
        by_url = {_url(fs, raw["name"]): raw for raw in listed}
        for url in members:
            raw = by_url.get(url)
            results[url] = (
                _describe(fs, url, raw)
                if raw is not None
                else fs_error(fs, FileNotFoundError(url), url, "checking")
            )
    if to_head:
        with ThreadPoolExecutor(max_workers=min(STAT_WORKERS, len(to_head))) as pool:
            stats = pool.map(lambda url: _describe(fs, url, None), to_head)
            results.update(zip(to_head, stats, strict=True))
    return results


# --- source cells -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """One source cell, resolved: what it names, its derived media_id, and what is there."""

    kind: SourceKind | None = None
    source: str | None = None  # absolute local path or URL
    media_id: str | None = None
    problem: Problem | None = None
    info: SourceInfo | None = None


def resolve_sources(
    cells: Iterable[tuple[int, str]],
    base: str,
    s3: S3Options | None,
    known: Mapping[str, Stat] | None = None,
) -> dict[int, Resolved]:
    """Each ``(row, source text)`` resolved against the folder ``base``, with its metadata.

    Every local and S3 source is checked before any row is validated: one :func:`stat_many`
    batch per filesystem. ``known`` holds what a listing already learned.
    """
    named = {row: _classify(text, base, row) for row, text in cells}
    stats = dict(known or {})
    for remote in (False, True):
        urls = [
            r.source
            for r in named.values()
            if r.problem is None
            and r.source is not None
            and r.source not in stats
            and r.kind is (SourceKind.s3 if remote else SourceKind.local)
        ]
        if urls:
            stats.update(stat_many(filesystem(urls[0], s3), urls))
    return {row: _checked(r, base, row, stats) for row, r in named.items()}


def _classify(text: str, base: str, row: int) -> Resolved:
    """What a source cell names (kind, absolute path or URL, media_id), before any request."""
    if _plain_http(text):
        # The common row of a big URL manifest: urlsplit + urlunsplit would give back the text
        # itself as the id, at ~40 % of a 1M-row manifest's resolve time.
        return Resolved(SourceKind.http, text, text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if is_s3_url(text) or (is_s3_url(base) and (scheme == "" or len(scheme) == 1)):
        return _classify_s3(text, base, row)
    # A one-letter "scheme" is a Windows drive (C:\media\a.wav), not a URL.
    if scheme in ("", "file") or len(scheme) == 1:
        local = parts.path if scheme == "file" else os.path.expanduser(text)
        # Strings, not pathlib: this runs once per row of million-row manifests. Lexical
        # normalisation (not realpath): ids must not change when a symlink is re-pointed.
        absolute = os.path.normpath(os.path.join(base, local))
        return Resolved(SourceKind.local, absolute, _relative_id(absolute, base))
    if scheme in ("http", "https"):
        if not parts.netloc:
            fix = "write a full URL such as https://example.com/a.mp3"
            return Resolved(problem=Problem(row, "source", f"URL {text!r} has no host", fix))
        # Query strings are often presigned signatures that change every run; the id must not.
        media_id = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        return Resolved(SourceKind.http, text, media_id)
    problem = Problem(
        row,
        "source",
        f"unsupported scheme {scheme!r} in {text!r}",
        "use a local path, an s3:// URL or an http(s) URL",
    )
    return Resolved(problem=problem)


def _plain_http(text: str) -> bool:
    """An ``http(s)://host/path`` URL that :func:`urlsplit` would not change: lower-case
    scheme, a host, ASCII without spaces, controls, query, fragment or IPv6 brackets."""
    start = 8 if text.startswith("https://") else 7 if text.startswith("http://") else 0
    return (
        start > 0
        and start < len(text)
        and text[start] != "/"
        and text.isascii()
        and text.isprintable()
        and not any(c in text for c in " ?#[]")
    )


def _classify_s3(text: str, base: str, row: int) -> Resolved:
    url = text if is_s3_url(text) else join_s3(base, text)
    if url is None:
        problem = Problem(
            row, "source", f"{text!r} climbs above the bucket of {base}", "fix the relative key"
        )
        return Resolved(problem=problem)
    bucket, key = split_s3(url)
    if not bucket or not key or key.endswith("/"):
        problem = Problem(
            row,
            "source",
            f"{url!r} does not name an object",
            "write s3://bucket/key (list a whole prefix as the manifest itself)",
        )
        return Resolved(problem=problem)
    # Like local paths: relative to the manifest's (or listing's) folder, else the full URL.
    media_id = url[len(base) :] if is_s3_url(base) and url.startswith(base) else url
    return Resolved(SourceKind.s3, url, media_id)


def _relative_id(absolute: str, base: str) -> str:
    """The path relative to the manifest folder (POSIX separators); absolute if outside it."""
    prefix = base if base.endswith(os.sep) else base + os.sep
    rel = absolute[len(prefix) :] if absolute.startswith(prefix) else absolute
    return rel.replace(os.sep, "/")


@dataclass(frozen=True, slots=True)
class _Words:
    """What a user calls things on each filesystem, so each message speaks its language."""

    empty: str
    replace: str
    not_a_file: str
    not_a_file_fix: str


_LOCAL_WORDS = _Words(
    "file is empty (0 bytes): {}",
    "remove the row or replace the file",
    "not a regular file: {}",
    "point at a media file; use a directory manifest for whole folders",
)
_S3_WORDS = _Words(
    "object is empty (0 bytes): {}",
    "remove the row or replace it",
    "{} is a folder",
    "use an S3 prefix manifest for whole folders",
)


def check_listed(url: str, base: str, row: int, stats: Mapping[str, Stat]) -> Resolved:
    """A file a listing found (``url``, with ``stats`` from it), resolved as a source cell."""
    return _checked(_classify(url, base, row), base, row, stats)


def _checked(r: Resolved, base: str, row: int, stats: Mapping[str, Stat]) -> Resolved:
    """``r`` with its metadata, or with the problem that its metadata shows."""
    if r.problem is not None or r.kind not in (SourceKind.local, SourceKind.s3):
        return r
    assert r.source is not None
    url = r.source
    words = _LOCAL_WORDS if r.kind is SourceKind.local else _S3_WORDS
    found = stats.get(url)
    problem: Problem | None = None
    if isinstance(found, NotAFileError):
        problem = Problem(row, "source", words.not_a_file.format(url), words.not_a_file_fix)
    elif isinstance(found, StorageError):
        # The error text already says what to check; the fix says what to do with the row.
        fix = "fix the row or the object" if not found.transient else "run again later"
        problem = Problem(row, "source", str(found), fix)
    elif isinstance(found, (FileNotFoundError, NotADirectoryError)):
        problem = Problem(
            row,
            "source",
            f"file not found: {url}",
            f"check the path (relative paths are resolved against {base})",
        )
    elif isinstance(found, OSError):
        problem = Problem(row, "source", f"cannot read {url}: {found.strerror}", "fix access")
    elif isinstance(found, SourceInfo) and found.size == 0:
        problem = Problem(row, "source", words.empty.format(url), words.replace)
    info = found if isinstance(found, SourceInfo) and problem is None else None
    return Resolved(r.kind, r.source, r.media_id, problem, info)
