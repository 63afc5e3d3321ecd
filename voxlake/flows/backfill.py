"""The backfill parent: split a manifest into K shards and run each as its own flow run.

Each shard is a run of the ``transcribe-manifest/shard`` deployment, so the shards go to
whichever workers of the pool are free, on this machine or others, and all write to the same
tables. The parent:

1. reads the manifest (a file, folder, prefix or glob) and keeps the items modified inside
   ``[modified_since, modified_until)``;
2. splits them by a hash of ``media_id`` into ``shards`` parts (deterministic: a retried parent
   makes the same shards) and writes each part as a JSON Lines manifest under
   ``<output>/_backfill/<parent run id>/``, where every worker can read it;
3. starts one child run per shard with ``run_deployment(..., idempotency_key=
   f"{parent}-shard-{k}")``, so a retried parent never starts a shard twice;
4. waits for all of them and publishes one markdown artifact with the totals, read back from
   the ``transcripts`` table rows the shards wrote.

No ``from __future__ import annotations``: Prefect builds the parameter model from these hints
in the worker's process, where string annotations have failed to resolve. The parameters it
shares with :class:`voxlake.request.RunRequest` have its types and help, and each shard's
parameters are validated with it before the shard is started.
"""

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments.flow_runs import arun_deployment
from prefect.flow_runs import wait_for_flow_run
from prefect.runtime import flow_run

from voxlake.lake.ledger import Ledger
from voxlake.lake.root import OutputRoot
from voxlake.manifest import MediaItem, TranscriptionOptions, read_manifest
from voxlake.request import (
    DEFAULT_WEBHOOK_HEADER,
    DEFAULT_WEBHOOK_SAFETY_POLL_S,
    CaptionFormat,
    CharsPerCaption,
    ChunkSize,
    OnInvalid,
    RunRequest,
    SafetyPoll,
    documented_by,
)
from voxlake.storage import S3Options

SHARD_DEPLOYMENT = "transcribe-manifest/shard"
_DEFAULT_OPTIONS = TranscriptionOptions()


@dataclasses.dataclass(frozen=True)
class ShardResult:
    index: int
    flow_run_id: str
    state: str
    items: int
    completed: int
    failed: int
    audio_hours: float


def shard_of(media_id: str, shards: int) -> int:
    """Stable across processes and runs (unlike ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(media_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def _in_window(
    when: dt.datetime | None, since: dt.datetime | None, until: dt.datetime | None
) -> bool:
    if since is None and until is None:
        return True
    if when is None:
        return False
    utc = [t if t is None or t.tzinfo else t.replace(tzinfo=dt.UTC) for t in (since, until)]
    return (utc[0] is None or when >= utc[0]) and (utc[1] is None or when < utc[1])


def _manifest_row(item: MediaItem) -> dict[str, Any]:
    # The item's effective options, so per-row overrides of the original manifest survive.
    # As sent (custom_spelling's `from`, not the field's name `from_`): a manifest row's keys.
    options = item.options.to_request_params()
    defaults = _DEFAULT_OPTIONS.to_request_params()
    overrides = {k: v for k, v in options.items() if defaults.get(k) != v}
    return {"source": item.source, "media_id": item.media_id, **overrides}


def _write_shard(output: str, s3: S3Options | None, name: str, items: list[MediaItem]) -> str:
    text = "".join(json.dumps(_manifest_row(item)) + "\n" for item in items)
    root = OutputRoot.of(output, s3=s3).check_bucket()
    path = root.publish_bytes(name, text.encode("utf-8"))
    return str(Path(path).resolve()) if root.local else f"{output.rstrip('/')}/{name}"


def _shard_totals(
    output: str, s3: S3Options | None, index: int, run: Any, items: int
) -> ShardResult:
    import pyarrow.compute as pc

    from voxlake.lake.read import read_table

    rows = read_table(
        OutputRoot.of(output, s3=s3).check_bucket(),
        "transcripts",
        filter=pc.field("flow_run_id") == str(run.id),
        columns=["status", "audio_duration_s"],
    )
    statuses = rows.column("status").to_pylist()
    seconds = pc.sum(rows.column("audio_duration_s")).as_py() or 0.0
    return ShardResult(
        index=index,
        flow_run_id=str(run.id),
        state=run.state.type.value if run.state else "UNKNOWN",
        items=items,
        completed=statuses.count("completed"),
        failed=statuses.count("error"),
        audio_hours=seconds / 3600.0,
    )


def summary_markdown(results: list[ShardResult], skipped: int, invalid: int) -> str:
    lines = [
        "# Backfill",
        "",
        "| shard | flow run | state | items | completed | failed | audio h |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.index} | {r.flow_run_id} | {r.state} | {r.items} | {r.completed} "
            f"| {r.failed} | {r.audio_hours:.2f} |"
        )
    total = (
        sum(r.items for r in results),
        sum(r.completed for r in results),
        sum(r.failed for r in results),
        sum(r.audio_hours for r in results),
    )
    lines.append(f"| **total** | | | {total[0]} | {total[1]} | {total[2]} | {total[3]:.2f} |")
    lines += ["", f"Outside the modification window: {skipped}. Invalid manifest rows: {invalid}."]
    return "\n".join(lines)


@flow(name="transcribe-manifest", persist_result=False)
@documented_by(RunRequest)  # the parameters it shares with the shards: their help
async def backfill(
    manifest: str,
    output: str,
    shards: int = 4,
    modified_since: dt.datetime | None = None,
    modified_until: dt.datetime | None = None,
    force: bool = False,
    retry_failed: bool = False,
    delete_after_collect: bool = False,
    options: dict[str, Any] | None = None,
    on_invalid: OnInvalid = "skip",
    media_extensions: list[str] | None = None,
    s3: S3Options | None = None,
    chunk_size: ChunkSize | None = None,
    shard_deployment: str = SHARD_DEPLOYMENT,
    shard_timeout_s: int = 7 * 24 * 3600,
    credentials_block: str | None = None,
    aws_credentials_block: str | None = None,
    shared_budget: str | None = None,
    captions: list[CaptionFormat] | None = None,
    chars_per_caption: CharsPerCaption | None = None,
    sentences: bool = False,
    paragraphs: bool = False,
    webhook_url: str | None = None,
    webhook_auth_header_name: str = DEFAULT_WEBHOOK_HEADER,
    webhook_auth_header_value_env: str | None = None,
    webhook_auth_header_value_secret: str | None = None,
    webhook_safety_poll_s: SafetyPoll = DEFAULT_WEBHOOK_SAFETY_POLL_S,
    detach: bool = False,
) -> dict[str, Any]:
    """Transcribe ``manifest`` in ``shards`` child flow runs; see the module doc.

    The flow is named ``transcribe-manifest`` like the one it fans out to, so that its
    deployment reads ``transcribe-manifest/backfill`` next to ``…/nightly`` and ``…/shard``.
    ``force``, ``retry_failed``, ``delete_after_collect``, the credentials block names,
    ``shared_budget`` and what to fetch besides each transcript (``captions``,
    ``chars_per_caption``, ``sentences``, ``paragraphs``) and the webhook mode (``webhook_*``,
    ``detach``; docs/webhooks.md) go to every shard. The parent holds
    the output root's lease for the whole backfill, with the shards in its lease group: a
    nightly run that starts meanwhile is refused, and no shard releases the root while its
    siblings still work (docs/ledger.md).
    """
    logger = get_run_logger()
    if shards < 1:
        raise ValueError("shards must be at least 1")
    if on_invalid not in ("fail", "skip"):
        raise ValueError("on_invalid must be 'fail' or 'skip'")
    parent_id = str(flow_run.get_id() or "local")
    read = await asyncio.to_thread(
        read_manifest,
        manifest,
        defaults=options,
        on_invalid=on_invalid,
        media_extensions=media_extensions,
        s3=s3,
    )
    # Resolving the manifest recorded each source's modification time: no second stat/HEAD.
    window = [
        item
        for item in read.items
        if _in_window(item.info.modified_at if item.info else None, modified_since, modified_until)
    ]
    parts: list[list[MediaItem]] = [[] for _ in range(shards)]
    for item in sorted(window, key=lambda i: i.media_id):
        parts[shard_of(item.media_id, shards)].append(item)

    # lease_group: the ledger's lease on the output root is shared by one backfill's shards.
    passed = {
        "force": force,
        "retry_failed": retry_failed,
        "delete_after_collect": delete_after_collect,
        "lease_group": parent_id,
        "credentials_block": credentials_block,
        "aws_credentials_block": aws_credentials_block,
        "shared_budget": shared_budget,
        "captions": captions,
        "chars_per_caption": chars_per_caption,
        "sentences": sentences,
        "paragraphs": paragraphs,
        # The secret's name (a variable of the shard's worker, or a Secret block), never it.
        "webhook_url": webhook_url,
        "webhook_auth_header_name": webhook_auth_header_name,
        "webhook_auth_header_value_env": webhook_auth_header_value_env,
        "webhook_auth_header_value_secret": webhook_auth_header_value_secret,
        "webhook_safety_poll_s": webhook_safety_poll_s,
        "detach": detach,
    }

    lease = await asyncio.to_thread(
        Ledger.open, output, run_id=parent_id, s3=s3, lease_group=parent_id
    )
    try:
        return await _run_shards(
            logger, parent_id, parts, shards, output, s3, chunk_size, passed, shard_deployment,
            shard_timeout_s, skipped=len(read.items) - len(window), invalid=len(read.invalid),
        )  # fmt: skip
    finally:
        await asyncio.to_thread(lease.close)


async def _finished(run_id: Any, timeout_s: int) -> FlowRun:
    return await settled(await wait_for_flow_run(run_id, timeout=timeout_s))


async def settled(run: FlowRun, deadline_s: float = 120.0) -> FlowRun:
    """``run`` once its state as read is final: read again until it is, for ``deadline_s``.

    ``wait_for_flow_run`` returns the run as read right after its final-state event, and a busy
    SQLite server has answered that read with the state before it (B9: a completed shard read
    as RUNNING failed a backfill whose items had all landed). A run still not final after the
    deadline is returned as read, and the parent reports it as not completed.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    async with get_client() as client:
        while not (run.state and run.state.is_final()) and loop.time() < end:
            await asyncio.sleep(1.0)  # the server's own pace: its write is in flight
            run = await client.read_flow_run(run.id)
    return run


async def _run_shards(
    logger: Any,
    parent_id: str,
    parts: list[list[MediaItem]],
    shards: int,
    output: str,
    s3: S3Options | None,
    chunk_size: int | None,
    passed: dict[str, Any],
    shard_deployment: str,
    shard_timeout_s: int,
    *,
    skipped: int,
    invalid: int,
) -> dict[str, Any]:
    runs: list[tuple[int, Any, int]] = []
    for k, part in enumerate(parts):
        if not part:
            continue
        name = f"_backfill/{parent_id}/shard-{k}-of-{shards}.jsonl"
        shard_manifest = await asyncio.to_thread(_write_shard, output, s3, name, part)
        parameters: dict[str, Any] = {
            "manifest": shard_manifest,
            "output": output,
            "on_invalid": "skip",
            "chunk_size": chunk_size,
            "s3": s3.model_dump() if s3 else None,
            **passed,
        }
        # A shard's parameters as the shard deployment validates them, before it is started.
        RunRequest.validate(parameters)
        child = await arun_deployment(
            shard_deployment,
            parameters=parameters,
            idempotency_key=f"{parent_id}-shard-{k}",
            flow_run_name=f"backfill-shard-{k}-of-{shards}",
            timeout=0,
            as_subflow=True,
        )
        runs.append((k, child, len(part)))
        logger.info("shard %d/%d: %d items -> flow run %s", k, shards, len(part), child.id)

    finished = await asyncio.gather(*(_finished(child.id, shard_timeout_s) for _, child, _ in runs))
    results = [
        await asyncio.to_thread(_shard_totals, output, s3, k, run, n)
        for (k, _, n), run in zip(runs, finished, strict=True)
    ]
    markdown = summary_markdown(results, skipped, invalid)
    await acreate_markdown_artifact(
        markdown=markdown, key="voxlake-backfill-summary", description="backfill totals"
    )
    not_completed = [r for r in results if r.state != "COMPLETED"]
    if not_completed:
        raise RuntimeError(
            f"{len(not_completed)} of {len(results)} shards did not complete: "
            + ", ".join(f"shard {r.index} {r.state}" for r in not_completed)
        )
    return {
        "shards": [dataclasses.asdict(r) for r in results],
        "completed": sum(r.completed for r in results),
        "failed": sum(r.failed for r in results),
        "outside_window": skipped,
        "invalid": invalid,
    }
