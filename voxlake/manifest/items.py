"""What reading a manifest gives: media items, the rows it skipped, and its problems."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from voxlake.errors import VoxlakeError
from voxlake.manifest.options import TranscriptionOptions, options_hash


class SourceKind(StrEnum):
    """Where a media item's bytes live; decides whether the flow uploads it."""

    local = "local"  # a file on this machine: uploaded to /v2/upload first
    s3 = "s3"  # s3://bucket/key: streamed from S3 into /v2/upload, or presigned (docs/s3.md)
    http = "http"  # http(s) URL: passed to AssemblyAI as audio_url, which fetches it itself


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
        if len(problems) == 1 and problems[0].row is None and problems[0].column is None:
            # About the whole manifest (missing, unreadable, empty): one line says it all.
            (p,) = problems
            super().__init__(f"{head}: {p.problem} — {p.fix}")
            return
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{head} has {len(problems)} {noun}:\n{lines}")
