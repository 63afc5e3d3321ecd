"""The extras stage: what the run fetches for a completed transcript besides its own JSON.

After a transcript is fetched, and before its rows are written (:mod:`voxlake.run.collect`):

- **captions** (``GET /v2/transcript/{id}/srt`` and ``/vtt``, with ``chars_per_caption``): one
  file per item and format, published atomically under the output root at
  :func:`caption_path`. They are durable before the item's rows are even buffered, so before
  the ``transcripts`` row that commits the item (docs/ledger.md): a crash never leaves a
  committed item without its captions, only captions of an item the next run collects again
  (free) and writes again at the same path;
- **sentences** and **paragraphs** (``GET /v2/transcript/{id}/sentences``, ``/paragraphs``):
  set on the transcript as its ``sentences`` / ``paragraphs`` fields, which the tables of those
  names read (:mod:`voxlake.lake.tables.sentences`), so they are written with its other nested
  rows, before its ``transcripts`` row.

Each is one GET per item through the run's client, like every request: it waits for the
request budget (reads give way to uploads and submits there, :mod:`voxlake.ratelimit`) and is
counted in the run's requests (``RunSummary.requests``). A failed fetch fails the item at
``fetch``: no ledger event, so the next run fetches the transcript and its extras again (GETs
only), never submits it again.

:func:`fetch_extras` takes one transcript, however it was fetched, so a later export or a
re-collect by transcript id can reuse it.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Literal
from urllib.parse import quote

from voxlake.client import SubtitleFormat
from voxlake.errors import VoxlakeError
from voxlake.lake.tables.sentences import segment
from voxlake.models import Transcript, TranscriptStatus
from voxlake.run.failures import fail
from voxlake.run.state import RunState

#: Where caption files live under the output root.
CAPTIONS_DIR = "captions"
# Most bytes of one path segment: file systems take 255, and the `.<name>.<8 hex>.tmp` temp
# file beside a caption (voxlake.lake.root) needs room too.
_MAX_SEGMENT = 200


def caption_path(fmt: str, media_id: str, transcript_id: str) -> str:
    """Where the ``fmt`` captions of ``media_id``'s transcript ``transcript_id`` are published,
    relative to the output root: ``captions/<fmt>/<media id>/<transcript id>.<fmt>``.

    The media id is percent-encoded into one folder name (``/``, ``?`` and every other
    character a path or URL would read are escaped, and a leading ``.`` too, so ``..`` or a
    hidden name is an ordinary folder); one longer than 200 bytes is cut and ends with ``~``
    and 16 hex digits of its sha256.
    """
    return f"{CAPTIONS_DIR}/{fmt}/{_segment(media_id)}/{_segment(transcript_id)}.{fmt}"


def _segment(text: str) -> str:
    quoted = quote(text, safe="")
    if quoted.startswith("."):
        quoted = "%2E" + quoted[1:]
    if len(quoted) > _MAX_SEGMENT:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        quoted = f"{quoted[: _MAX_SEGMENT - 17]}~{digest}"
    return quoted


async def fetch_extras(state: RunState, media_id: str, transcript: Transcript) -> bool:
    """Fetch what the run asks for besides a completed ``transcript``: its captions published,
    its sentences and paragraphs set on it. False once the item has failed (recorded)."""
    extras = state.settings.extras
    if not extras or transcript.status is not TranscriptStatus.completed:
        return True
    fetches = [_captions(state, media_id, transcript.id, fmt) for fmt in extras.captions]
    if extras.sentences:
        fetches.append(_segments(state, transcript, "sentences"))
    if extras.paragraphs:
        fetches.append(_segments(state, transcript, "paragraphs"))
    # Every fetch runs to its end (no request left behind unawaited); the first error counts.
    results = await asyncio.gather(*fetches, return_exceptions=True)
    for result in results:
        if isinstance(result, VoxlakeError | OSError):
            fail(state, media_id, "fetch", result)
            return False
        if isinstance(result, BaseException):
            raise result
    return True


async def _captions(
    state: RunState, media_id: str, transcript_id: str, fmt: SubtitleFormat
) -> None:
    async with state.requests:
        text = await state.client.get_subtitles(
            transcript_id,
            fmt,
            chars_per_caption=state.settings.extras.chars_per_caption,
        )
    path = caption_path(fmt, media_id, transcript_id)
    await asyncio.to_thread(state.root.publish_bytes, path, text.encode("utf-8"))
    state.captions_written += 1


async def _segments(
    state: RunState, transcript: Transcript, kind: Literal["sentences", "paragraphs"]
) -> None:
    found: list[Any]
    async with state.requests:
        if kind == "sentences":
            found = list((await state.client.get_sentences(transcript.id)).sentences)
        else:
            found = list((await state.client.get_paragraphs(transcript.id)).paragraphs)
    # Kept as counts, not words: the transcript already holds its words once.
    setattr(transcript, kind, [segment(s) for s in found])
