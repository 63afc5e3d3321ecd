"""``voxlake purge OUTPUT``: delete at AssemblyAI every transcript the output root's ledger knows
is still held there (docs/ledger.md, "Deleting transcripts at AssemblyAI").

Held: a collected transcript (``completed`` or ``job_failed`` in the ledger) with no
``deleted`` event, whichever run collected it and whether or not it asked for deletion. Jobs
still in flight are left alone: a run collects them first. Dry run by default; with ``yes``
each transcript is deleted (``DELETE /v2/transcript/{id}``, under the client's retries) and
``deleted`` recorded, so a second purge finds nothing. A 404 counts as deleted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass, field

from voxlake.client import AssemblyAIClient
from voxlake.lake.ledger import Event, Held, Ledger, Status
from voxlake.run.delete import delete_transcripts
from voxlake.run.state import DeleteFailure
from voxlake.storage import S3Options

#: Concurrent DELETE requests (as a run's ``max_requests``).
MAX_REQUESTS = 16


@dataclass(frozen=True, slots=True)
class PurgeResult:
    held: Held  # what the ledger knew before
    deleted: int = 0
    failures: list[DeleteFailure] = field(default_factory=list)
    fatal: str | None = None  # why requests stopped (a refused key)


def purge(output: str, *, yes: bool, s3: S3Options | None = None) -> PurgeResult:
    """List (``yes=False``: nothing sent, nothing written) or delete the held transcripts."""
    run_id = f"purge-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    # Deleting takes the lease: it records events, and no run may be collecting meanwhile.
    with Ledger.open(output, run_id=run_id, s3=s3, read_only=not yes) as ledger:
        held = ledger.held()
        if not yes or not held.transcripts:
            return PurgeResult(held)
        return asyncio.run(_delete(ledger, held))


async def _delete(ledger: Ledger, held: Held) -> PurgeResult:
    asked = [
        Event(h.item, Status.deleting, transcript_id=h.transcript_id) for h in held.transcripts
    ]
    async with AssemblyAIClient() as client:
        deleted, failures, fatal = await delete_transcripts(
            client, ledger, asked, requests=asyncio.Semaphore(MAX_REQUESTS)
        )
    return PurgeResult(held, deleted, failures, str(fatal) if fatal else None)
