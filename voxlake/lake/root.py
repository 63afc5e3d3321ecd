"""The output root: one folder or ``s3://`` prefix, and the one way anything is published under it.

:class:`OutputRoot` is what a run, a reader and the ledger are given instead of a path and S3
options travelling apart: it resolves ``output`` (local folder, ``s3://bucket/prefix`` read and
written with s3fs and the run's :class:`~voxlake.storage.S3Options`, or any pyarrow / fsspec
filesystem a caller hands over), lists and deletes what is under it, and publishes files
atomically (:meth:`OutputRoot.publish`): the tables' Parquet parts, the ledger's event files
and the run report all go through that one method, so no reader ever sees half a file.

Locally a file is written to a hidden temp file beside its target (``.<name>.<8 hex>.tmp``:
skipped by pyarrow.dataset, Spark and pandas, not matched by ``*.parquet`` globs such as
DuckDB's), fsynced, then renamed over it. On an object store nothing is visible until the
upload completes (one PUT, or a multipart upload completed on close, aborted on failure).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable
from typing import IO, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from voxlake.storage import (
    S3Options,
    StorageError,
    is_s3_url,
    s3_filesystem,
    s3_path,
    split_s3,
    storage_error,
)

__all__ = ["TEMP_SUFFIX", "OutputRoot"]

#: The end of every in-flight temp file's name (see the module docstring).
TEMP_SUFFIX = ".tmp"

Writer = Callable[[IO[bytes]], None]


def _fsspec_of(fs: pafs.FileSystem) -> Any | None:
    """The fsspec filesystem behind a pyarrow wrapper (s3fs, memory, ...), else None."""
    handler = getattr(fs, "handler", None)
    return handler.fs if isinstance(handler, pafs.FSSpecHandler) else None


class OutputRoot:
    """Where a run's tables and ledger live: a filesystem, a base path and the S3 options.

    Build one with :meth:`of`; it does no I/O (:meth:`check_bucket` does one request).
    ``url`` is the root as the user wrote it (for messages), ``path`` the filesystem path of
    the base (absolute locally, ``bucket/prefix`` on S3), ``fs`` the pyarrow filesystem and
    ``fsspec`` the fsspec filesystem behind it when there is one (s3fs on S3).
    """

    def __init__(
        self, url: str, path: str, fs: pafs.FileSystem, *, s3: S3Options | None = None
    ) -> None:
        self.url = url
        self.fs = fs
        self.fsspec: Any | None = _fsspec_of(fs)
        self.local = isinstance(fs, pafs.LocalFileSystem)
        self.path = os.path.abspath(path) if self.local else path.rstrip("/")
        self.s3 = s3

    @classmethod
    def of(
        cls,
        root: str | os.PathLike[str] | OutputRoot,
        *,
        s3: S3Options | None = None,
        filesystem: Any | None = None,
    ) -> OutputRoot:
        """``root`` resolved: an ``s3://`` URL gets s3fs with ``s3`` (default: the AWS
        credential chain, ``AWS_ENDPOINT_URL_S3``, ...); ``filesystem`` (pyarrow or fsspec)
        overrides how the root is reached; anything else is a local folder."""
        if isinstance(root, OutputRoot):
            return root
        text = os.fspath(root)
        if filesystem is None and is_s3_url(text):
            fs: pafs.FileSystem = pafs.PyFileSystem(pafs.FSSpecHandler(s3_filesystem(s3)))
            return cls(text, s3_path(text), fs, s3=s3)
        if filesystem is None:
            fs = pafs.LocalFileSystem()
        elif isinstance(filesystem, pafs.FileSystem):
            fs = filesystem
        else:  # an fsspec filesystem (s3fs, memory, ...): pyarrow wraps it, same interface
            fs = pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
        return cls(text, text, fs, s3=s3)

    def __repr__(self) -> str:
        return f"OutputRoot({self.url!r})"

    def check_bucket(self) -> OutputRoot:
        """For an ``s3://`` root, check its bucket exists (one request), so that a typo in
        ``--output`` fails a run before any upload instead of after every transcript is paid
        for. Returns ``self``."""
        if not is_s3_url(self.url):
            return self
        bucket, _ = split_s3(self.url)
        if not bucket:
            raise StorageError(f"output {self.url!r} has no bucket — write s3://bucket/prefix")
        try:
            assert self.fsspec is not None  # an s3:// root is always s3fs
            self.fsspec.info(bucket)
        except Exception as exc:
            if isinstance(exc, FileNotFoundError):  # HEAD on a bucket: 404 means no such bucket
                exc = FileNotFoundError("The specified bucket does not exist")
            raise storage_error(exc, self.url, "checking the output bucket of") from None
        return self

    # --- paths and listing ----------------------------------------------------------------------

    def join(self, relative: str) -> str:
        """The filesystem path of ``relative`` (``/``-separated) under the root."""
        return f"{self.path}/{relative}" if relative else self.path

    def exists(self, relative: str = "") -> bool:
        return bool(self.fs.get_file_info(self.join(relative)).type != pafs.FileType.NotFound)

    def list_files(self, relative: str, suffix: str = ".parquet") -> list[str]:
        """Sorted names of the visible files ending in ``suffix`` directly in a folder (none
        when it does not exist); hidden names (temp files) are left out."""
        folder = self.join(relative)
        if self.fsspec is not None:  # one LIST on an object store
            try:
                found = self.fsspec.ls(folder, detail=False)
            except FileNotFoundError:
                return []
            names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in found]
        else:
            selector = pafs.FileSelector(folder, allow_not_found=True)
            names = [info.base_name for info in self.fs.get_file_info(selector)]
        return sorted(n for n in names if n.endswith(suffix) and not n.startswith("."))

    def delete(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.join(relative))

    def open_input_file(self, relative: str) -> Any:
        return self.fs.open_input_file(self.join(relative))

    # --- the one atomic publish path -----------------------------------------------------------

    def publish(self, relative: str, write: Writer) -> str:
        """Publish what ``write`` writes at ``relative`` so that no reader ever sees a partial
        file; returns its path. Parent folders are created locally only (s3fs would create a
        missing *bucket*)."""
        path = self.join(relative)
        if self.local:
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            tmp = self.write_temp(path, write)
            try:
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            return path
        if self.fsspec is None:
            # A native pyarrow object store (pyarrow.fs.S3FileSystem): serialise first, then
            # one write, so a failure while encoding never touches the store.
            sink = pa.BufferOutputStream()
            write(sink)
            with self.fs.open_output_stream(path) as out:
                out.write(sink.getvalue())
            return path
        protocols = self.fsspec.protocol
        if {"file", "local"} & set([protocols] if isinstance(protocols, str) else protocols):
            self.fsspec.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # real folders only
        f = self.fsspec.open(path, "wb")
        try:
            write(f)
        except BaseException:
            discard = getattr(f, "discard", None)
            with contextlib.suppress(Exception):
                if discard is not None:
                    discard()  # s3fs: abort the multipart upload
            f.closed = True  # never commit what was buffered
            raise
        f.close()  # the commit: one PUT, or CompleteMultipartUpload
        return path

    def publish_parquet(self, relative: str, table: pa.Table, **parquet_options: Any) -> str:
        def write(f: IO[bytes]) -> None:
            pq.write_table(table, f, **parquet_options)

        return self.publish(relative, write)

    def publish_bytes(self, relative: str, data: bytes) -> str:
        def write(f: IO[bytes]) -> None:
            f.write(data)

        return self.publish(relative, write)

    @staticmethod
    def write_temp(path: str, write: Writer) -> str:
        """A local hidden temp file beside ``path`` (same filesystem, so a rename or link onto
        ``path`` is atomic), written by ``write`` and fsynced; its path. Removed on failure."""
        directory, name = path.rsplit("/", 1)
        tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}"
        try:
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                # Without fsync a crash after the rename can leave a complete name, empty data.
                os.fsync(f.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    def remove_temp_files(self) -> int:
        """Delete the temp files an interrupted writer left under a local root; how many.

        Only for a process that owns the root (the holder of the ledger's lease): another
        writer's temp file is in flight. Object stores publish whole objects only, so there is
        nothing half-written to remove there."""
        if not self.local:
            return 0
        removed = 0
        for folder, dirs, names in os.walk(self.path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(folder, name))
                        removed += 1
        return removed
