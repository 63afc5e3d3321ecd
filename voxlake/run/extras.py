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

:func:`fetch_extras` takes one transcript, however it was fetched; :func:`fetch_tables` is
its optional tables' part, which ``voxlake recollect`` (:mod:`voxlake.run.recollect`) uses too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any
from urllib.parse import quote

from voxlake.client import AssemblyAIClient, SubtitleFormat
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
    fetches += [_segments(state.client, state.requests, transcript, t) for t in extras.tables]
    try:
        await _all(fetches)
    except (VoxlakeError, OSError) as exc:
        fail(state, media_id, "fetch", exc)
        return False
    return True


async def fetch_tables(
    client: AssemblyAIClient,
    transcript: Transcript,
    tables: Iterable[str],
    requests: asyncio.Semaphore | None = None,
) -> None:
    """Fetch the optional ``tables`` (``sentences``, ``paragraphs``) of a completed
    ``transcript`` and set them on it, each request in a slot of ``requests`` (None: the caller
    holds one for the item). Raises the first error, once every fetch has ended."""
    await _all([_segments(client, requests, transcript, t) for t in tables])


async def _all(fetches: Sequence[Coroutine[Any, Any, None]]) -> None:
    # Every fetch runs to its end (no request left behind unawaited); the first error counts.
    for result in await asyncio.gather(*fetches, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


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
    client: AssemblyAIClient,
    requests: asyncio.Semaphore | None,
    transcript: Transcript,
    kind: str,
) -> None:
    found: list[Any]
    async with requests or contextlib.nullcontext():
        if kind == "sentences":
            found = list((await client.get_sentences(transcript.id)).sentences)
        elif kind == "paragraphs":
            found = list((await client.get_paragraphs(transcript.id)).paragraphs)
        else:  # a new optional table needs its request here
            raise ValueError(f"no request fetches the optional table {kind!r}")
    # Kept as counts, not words: the transcript already holds its words once.
    setattr(transcript, kind, [segment(s) for s in found])
