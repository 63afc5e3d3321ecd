"""Webhook delivery: POST {transcript_id, status} with the custom auth header.

AssemblyAI's documented behaviour: the receiver must answer 2xx within 10 s, else the call is
retried, up to 10 attempts in total; a 4xx means "failed, not retried". The transcript's
``webhook_status_code`` records the last reply. The header value is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from voxlake.emulator.stats import Stats
from voxlake.emulator.store import TranscriptRecord

log = logging.getLogger("voxlake.emulator.webhooks")


async def deliver(
    client: httpx.AsyncClient,
    rec: TranscriptRecord,
    stats: Stats,
    *,
    attempts: int,
    timeout_s: float,
    retry_delay_s: float,
    on_change: Callable[[], None],
) -> None:
    url = rec.params.get("webhook_url")
    if not url:
        return
    headers = {"Content-Type": "application/json"}
    name = rec.params.get("webhook_auth_header_name")
    if name and rec.webhook_auth_header_value is not None:
        headers[name] = rec.webhook_auth_header_value.get_secret_value()
    payload = {"transcript_id": rec.id, "status": rec.status}
    for attempt in range(1, attempts + 1):
        stats.change(lambda s: setattr(s, "webhook_attempts", s.webhook_attempts + 1))
        code: int | None = None
        try:
            resp = await client.post(url, json=payload, headers=headers, timeout=timeout_s)
            code = resp.status_code
        except httpx.HTTPError as exc:
            log.info("webhook for %s attempt %d failed: %s", rec.id, attempt, type(exc).__name__)
        if code is not None:
            rec.webhook_status_code = code
            on_change()
            if 200 <= code < 300:
                stats.change(lambda s: setattr(s, "webhooks_delivered", s.webhooks_delivered + 1))
                return
            if 400 <= code < 500:
                break  # documented: a 4xx is a final failure, not retried
        if attempt < attempts:
            await asyncio.sleep(retry_delay_s)
    stats.change(lambda s: setattr(s, "webhooks_failed", s.webhooks_failed + 1))
