"""The upload stage: local and S3 media into AssemblyAI's upload endpoint.

http(s) sources pass through as their own audio_url (AssemblyAI fetches them). At most
``max_uploads`` uploads run at once: they are bandwidth-bound, not API-bound.
"""

from __future__ import annotations

from collections.abc import Sequence

from voxlake.crashpoints import crashpoint
from voxlake.errors import VoxlakeError
from voxlake.manifest import MediaItem, SourceKind
from voxlake.run.failures import fail
from voxlake.run.state import RunState, each
from voxlake.sources import ObjectInfo, stage_s3


async def upload(state: RunState, media_ids: Sequence[str]) -> list[str]:
    """Upload what has no audio_url yet; the ids that have one now."""
    todo = [
        m
        for m in media_ids
        if state.pending(m) and not state.records[m].audio_url and not state.stopped()
    ]
    await each(todo, lambda media_id: _upload_one(state, media_id))
    state.progress.advance("upload", len(todo))
    return [m for m in media_ids if state.pending(m) and state.records[m].audio_url]


async def _upload_one(state: RunState, media_id: str) -> None:
    rec = state.records[media_id]
    item = rec.item
    if item.kind is SourceKind.http:
        rec.audio_url = item.source
        return
    async with state.uploads:
        if state.stopped():
            return
        try:
            if item.kind is SourceKind.s3:
                # Streamed from S3 into the upload, or presigned (voxlake.sources); the
                # object's size and ETag come from resolving the manifest.
                rec.audio_url = await stage_s3(state.client, _object_info(item), state.s3)
            else:
                with open(item.source, "rb") as f:
                    uploaded = await state.client.upload(f, size=item.size)
                rec.audio_url = uploaded.upload_url
        except (VoxlakeError, OSError) as exc:
            fail(state, media_id, "upload", exc)
            return
    crashpoint("upload")


def _object_info(item: MediaItem) -> ObjectInfo:
    info = item.info
    if info is None:  # resolving always fills it for S3 rows; be explicit if it did not
        raise VoxlakeError(f"{item.source}: no object metadata from resolving the manifest")
    return ObjectInfo(item.source, info.size, info.etag, info.modified_at)
