"""The few storage operations the ledger needs beyond publishing: conditional writes.

The lease is created only if absent and replaced only if unchanged since it was read. Locally
that is an ``O_EXCL``-like ``link`` and a read-compare-replace under ``flock``; on S3 it is a
``PUT`` with ``If-None-Match: *`` / ``If-Match: <ETag>`` (s3fs's ``pipe_file``) and one
``GET`` whose body and ETag belong together (the aiobotocore client of ``set_session``).
Everything else (paths, listing, deleting, the atomic publish of event files) is the
:class:`~voxlake.lake.root.OutputRoot`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from typing import IO, Any

from voxlake.errors import ConfigurationError, VoxlakeError
from voxlake.lake.ledger.events import EVENTS_DIR, LEDGER_DIR
from voxlake.lake.root import OutputRoot
from voxlake.storage import S3Options, storage_error

__all__ = ["Store", "open_store"]


class Store:
    """The ledger's view of an output root: its root plus conditional writes."""

    def __init__(self, root: OutputRoot) -> None:
        self.output = root
        self.root = root.path  # as messages name it
        self.local = root.local
        self._s3fs: Any = root.fsspec  # s3fs when not local
        # Files read at once: an object store's latency wants many requests in flight; locally
        # more threads only add per-thread allocator arenas (measured: +40 MB for 300 files).
        self.parallel_reads = 2 if root.local else 16

    def path(self, relative: str) -> str:
        return self.output.join(relative)

    def read_versioned(self, relative: str) -> tuple[bytes, str] | None:
        """The object's bytes and a version tag for :meth:`replace_if`, or None if absent."""
        path = self.path(relative)
        if self.local:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                return None
            return data, hashlib.sha256(data).hexdigest()
        from fsspec.asyn import sync

        fs = self._s3fs
        bucket, _, key = path.partition("/")

        async def get() -> tuple[bytes, str] | None:
            # Body and ETag of one GET: the tag must belong to exactly these bytes.
            client = await fs.set_session()
            try:
                response = await client.get_object(Bucket=bucket, Key=key)
            except client.exceptions.NoSuchKey:
                return None
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data, str(response["ETag"])

        found: tuple[bytes, str] | None = sync(fs.loop, get)
        return found

    def create(self, relative: str, data: bytes) -> bool:
        """Write only if absent; False if it exists (atomic: link / If-None-Match)."""
        path = self.path(relative)
        if self.local:
            tmp = OutputRoot.write_temp(path, _writer(data))
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            return True
        try:
            self._s3fs.pipe_file(path, data, mode="create")
        except Exception as exc:  # s3fs maps 412 PreconditionFailed to various errors
            if _precondition_failed(exc):
                return False
            raise
        return True

    def replace_if(self, relative: str, data: bytes, tag: str) -> bool:
        """Replace only if the stored version is still ``tag`` (flock / If-Match)."""
        path = self.path(relative)
        if self.local:
            with self._locked():
                current = self.read_versioned(relative)
                if current is None or current[1] != tag:
                    return False
                os.replace(OutputRoot.write_temp(path, _writer(data)), path)
            return True
        try:
            # s3fs passes extra keywords on to the PUT: a conditional write.
            self._s3fs.pipe_file(path, data, IfMatch=tag)
        except Exception as exc:
            if _precondition_failed(exc):
                return False
            raise
        return True

    def delete(self, relative: str) -> None:
        self.output.delete(relative)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The read-compare-replace of a local lease under an advisory lock: released by the
        # kernel if the process dies, so a kill -9 can never leave it held.
        with open(self.path(f"{LEDGER_DIR}/.lease.lock"), "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _writer(data: bytes) -> Any:
    def write(f: IO[bytes]) -> None:
        f.write(data)

    return write


def _precondition_failed(exc: BaseException) -> bool:
    # s3fs turns a 412 into FileExistsError (If-None-Match) or a plain OSError whose cause is
    # botocore's ClientError (If-Match): look along the chain.
    current: BaseException | None = exc
    for _ in range(5):
        if current is None:
            break
        text = f"{type(current).__name__} {current}"
        if "PreconditionFailed" in text or "412" in text or isinstance(current, FileExistsError):
            return True
        current = current.__cause__ or current.__context__
    return False


def open_store(output: str | OutputRoot, s3: S3Options | None = None, *, create: bool) -> Store:
    """The ledger's store of ``output``: its bucket checked (S3), or the folder checked and,
    with ``create``, made (local). Errors say what to do; nothing was uploaded yet."""
    root = OutputRoot.of(output, s3=s3)
    if not root.local:
        return Store(root.check_bucket())
    if os.path.exists(root.path) and not os.path.isdir(root.path):
        raise ConfigurationError(
            f"output {root.url!r} is a file, not a folder: choose a folder for --output "
            "(it is created if missing). Nothing was uploaded or submitted."
        )
    if create:
        try:
            os.makedirs(root.join(EVENTS_DIR), exist_ok=True)
        except OSError as exc:
            raise unwritable(root.url, exc) from None
    return Store(root)


def unwritable(output: str, exc: BaseException) -> VoxlakeError:
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        reason = exc.strerror or str(exc)
        return ConfigurationError(
            f"output {output!r} is not writable ({reason}): choose a folder you can write to. "
            "Nothing was uploaded or submitted."
        )
    err = storage_error(exc, output, "writing to the output")
    return ConfigurationError(f"{err} Nothing was uploaded or submitted.")
