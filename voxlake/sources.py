"""S3 media: what S3 says about an object (its fingerprint), and streaming or presigning it.

Listing and checking objects is the manifest's job (:mod:`voxlake.manifest.resolve`), with the
same code as for local files.

S3 objects reach the transcription service one of two ways (docs/s3.md):

- **upload** (default): the object is streamed from s3fs into ``POST /v2/upload`` in 1 MiB
  reads through a small read-ahead buffer: no temp file, no whole-object read, memory bounded
  by ``S3_BLOCK_SIZE`` per concurrent upload whatever the object's size;
- **presign**: a presigned GET URL is submitted as ``audio_url`` and the service fetches the
  object itself; the pipeline moves no media bytes at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from voxlake.errors import MediaReadError
from voxlake.storage import (
    S3Options,
    s3_filesystem,
    s3_path,
    storage_error,
)

__all__ = [
    "S3_BLOCK_SIZE",
    "ObjectInfo",
    "S3Reader",
    "stage_s3",
]

#: Read-ahead block of an S3 upload stream: each ranged GET fetches this much (plus the 1 MiB
#: read that triggered it). The whole per-upload buffer is about this size.
S3_BLOCK_SIZE = 4 * 1024 * 1024

# --- object metadata --------------------------------------------------------------------------


def _utc(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value:
        return _utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What S3 says about one object: enough to upload it and to fingerprint it."""

    url: str
    size: int
    etag: str | None
    last_modified: dt.datetime | None
    is_file: bool = True

    @classmethod
    def from_s3fs(cls, url: str, raw: Mapping[str, Any]) -> ObjectInfo:
        etag = raw.get("ETag") or raw.get("etag")
        return cls(
            url=url,
            size=int(raw.get("size") or raw.get("Size") or 0),
            etag=str(etag).strip('"') if etag else None,
            last_modified=_utc(raw.get("LastModified") or raw.get("last_modified")),
            is_file=raw.get("type", "file") == "file",
        )

    @property
    def fingerprint(self) -> str:
        """``s3:<size>:<etag>:<last-modified, UTC ISO 8601>`` (docs/tables.md).

        The ETag changes whenever the bytes do (it is an MD5 for single-part uploads, a hash of
        part hashes for multipart ones); size and last-modified make it unambiguous.
        """
        modified = self.last_modified.strftime("%Y-%m-%dT%H:%M:%SZ") if self.last_modified else ""
        return f"s3:{self.size}:{self.etag or ''}:{modified}"


# --- streaming and presigning -----------------------------------------------------------------


class S3Reader:
    """A seekable binary reader over one S3 object, named by its ``s3://`` URL.

    Wraps the s3fs file in read-ahead mode: a 1 MiB read costs at most one ranged GET of
    ``S3_BLOCK_SIZE`` + 1 MiB, and only the latest block is kept, so memory stays flat for
    objects of any size. Read errors surface as ``OSError`` (the upload client turns them into
    a retryable MediaReadError and rewinds).
    """

    def __init__(self, fs: Any, info: ObjectInfo, block_size: int = S3_BLOCK_SIZE) -> None:
        self.name = info.url
        self.size = info.size
        self._file: BinaryIO = fs.open(
            s3_path(info.url),
            "rb",
            block_size=block_size,
            cache_type="readahead",
            size=info.size,
        )

    def read(self, n: int = -1) -> bytes:
        return self._file.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> S3Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def stage_s3(client: Any, info: ObjectInfo, options: S3Options | None) -> str:
    """The ``audio_url`` of an S3 object: its upload URL, streamed (or a presigned URL).

    ``info`` comes from resolving the manifest, so the object is not HEADed again. Raises
    :class:`~voxlake.storage.StorageError` (missing key or bucket, access denied: terminal;
    throttling: transient) or the client's upload errors.
    """
    import asyncio

    options = options or S3Options()
    fs = s3_filesystem(options)
    url = info.url
    if options.presign:
        try:
            return await asyncio.to_thread(
                fs.sign, s3_path(url), expiration=options.presign_expires_s
            )
        except Exception as exc:
            raise storage_error(exc, url, "presigning") from None
    try:
        reader = await asyncio.to_thread(S3Reader, fs, info)
    except Exception as exc:
        raise storage_error(exc, url, "opening") from None
    try:
        uploaded = await client.upload(reader, size=info.size)
    except MediaReadError as exc:
        # The object changed since the manifest was resolved (deleted, access revoked): say so
        # in S3's terms rather than as a generic read error.
        if isinstance(exc.__cause__, OSError):
            raise storage_error(exc.__cause__, url, "reading") from None
        raise
    finally:
        await asyncio.to_thread(reader.close)
    return str(uploaded.upload_url)
