"""In-memory state: uploaded files and transcripts (kept on disk too with a state directory:
voxlake.emulator.persist, through the stores' ``on_change`` callbacks).

Transcripts live per project in insertion order (``seq`` is the position in that order), with
per-status and per-date position lists kept sorted, so list paging is a bisect plus a short
scan even with tens of thousands of transcripts.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from voxlake.emulator.engines import EngineResult


def wall_stamp(epoch: float) -> str:
    """AssemblyAI's timestamp style: UTC, microseconds, no timezone suffix."""
    return (
        dt.datetime.fromtimestamp(epoch, dt.UTC)
        .replace(tzinfo=None)
        .isoformat(timespec="microseconds")
    )


@dataclass
class Upload:
    id: str
    project: str
    path: Path
    size: int
    created_at: float
    deleted: bool = False


@dataclass
class TranscriptRecord:
    id: str
    project: str
    seq: int
    audio_url: str
    params: dict[str, Any]
    created: str
    created_date: str
    upload_id: str | None = None
    status: str = "queued"
    throttled: bool | None = None
    completed: str | None = None
    result: EngineResult | None = None
    error: str | None = None
    webhook_status_code: int | None = None
    webhook_auth_header_value: SecretStr | None = None
    deleted: bool = False
    extra_echo: dict[str, Any] = field(default_factory=dict)
    order: int = 0  # position among every project's transcripts, in creation order

    @property
    def done(self) -> bool:
        return self.status in ("completed", "error")


class UploadStore:
    def __init__(
        self,
        root: Path,
        ttl_s: float,
        clock: Callable[[], float],
        *,
        on_change: Callable[[Upload], None] | None = None,
    ) -> None:
        self.root = root
        self.ttl_s = ttl_s
        self.clock = clock
        self._uploads: dict[str, Upload] = {}
        self._on_change = on_change  # told of each upload added or deleted
        root.mkdir(parents=True, exist_ok=True)

    def new_path(self) -> tuple[str, Path]:
        uid = str(uuid.uuid4())
        return uid, self.root / f"{uid}.upload"

    def add(self, uid: str, project: str, path: Path, size: int) -> Upload:
        up = Upload(uid, project, path, size, self.clock())
        self._uploads[uid] = up
        if self._on_change is not None:
            self._on_change(up)
        return up

    def restore(self, up: Upload) -> None:
        """Take back an upload a previous process of this server received."""
        self._uploads[up.id] = up

    def get(self, uid: str) -> Upload | None:
        """The upload if it exists and has not expired (expired ones are purged on the way)."""
        up = self._uploads.get(uid)
        if up is None or up.deleted:
            return None
        if self.expired(up):
            return None
        return up

    def expired(self, up: Upload) -> bool:
        return self.clock() - up.created_at > self.ttl_s

    def delete(self, uid: str) -> None:
        up = self._uploads.get(uid)
        if up is not None and not up.deleted:
            up.deleted = True
            with contextlib.suppress(FileNotFoundError):
                up.path.unlink()
            if self._on_change is not None:
                self._on_change(up)

    def sweep(self, in_use: Callable[[str], bool]) -> int:
        """Delete expired upload files that no queued/processing job still needs."""
        n = 0
        for up in list(self._uploads.values()):
            if not up.deleted and self.expired(up) and not in_use(up.id):
                self.delete(up.id)
                n += 1
        return n


class _Project:
    def __init__(self) -> None:
        self.items: list[TranscriptRecord] = []
        self.by_status: dict[str, list[int]] = {}
        self.by_date: dict[str, list[int]] = {}


class TranscriptStore:
    def __init__(self, on_change: Callable[[TranscriptRecord], None] | None = None) -> None:
        self._by_id: dict[str, TranscriptRecord] = {}
        self._projects: dict[str, _Project] = {}
        # Told of each status change (and by the app, of creations and deletions).
        self.on_change = on_change

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[TranscriptRecord]:
        return iter(self._by_id.values())

    def create(
        self, project: str, audio_url: str, params: dict[str, Any], now: float
    ) -> TranscriptRecord:
        created = wall_stamp(now)
        rec = TranscriptRecord(
            id=str(uuid.uuid4()),
            project=project,
            seq=0,
            audio_url=audio_url,
            params=params,
            created=created,
            created_date=created[:10],
        )
        self.restore(rec)
        return rec

    def restore(self, rec: TranscriptRecord) -> None:
        """Add ``rec`` as the newest transcript (also one a previous process created)."""
        proj = self._projects.setdefault(rec.project, _Project())
        rec.seq = len(proj.items)
        rec.order = len(self._by_id)
        proj.items.append(rec)
        self._by_id[rec.id] = rec
        proj.by_status.setdefault(rec.status, []).append(rec.seq)
        proj.by_date.setdefault(rec.created_date, []).append(rec.seq)

    def get(self, project: str, tid: str) -> TranscriptRecord | None:
        rec = self._by_id.get(tid)
        # Transcripts belong to the project whose key created them; others see "Not found".
        return rec if rec is not None and rec.project == project else None

    def get_any(self, tid: str) -> TranscriptRecord | None:
        return self._by_id.get(tid)

    def set_status(self, rec: TranscriptRecord, status: str) -> None:
        if rec.status == status:
            return
        proj = self._projects[rec.project]
        old = proj.by_status[rec.status]
        i = bisect.bisect_left(old, rec.seq)
        if i < len(old) and old[i] == rec.seq:
            del old[i]
        bisect.insort(proj.by_status.setdefault(status, []), rec.seq)
        rec.status = status
        if self.on_change is not None:
            self.on_change(rec)

    def page(
        self,
        project: str,
        limit: int,
        status: str | None,
        created_on: str | None,
        before: TranscriptRecord | None,
        after: TranscriptRecord | None,
    ) -> tuple[list[TranscriptRecord], bool, bool]:
        """(page newest first, older matches exist, newer matches exist).

        ``before`` alone: the ``limit`` newest strictly older than it. ``after``: the ``limit``
        oldest strictly newer than it (i.e. the page immediately following it in time).
        """
        proj = self._projects.get(project)
        if proj is None:
            return [], False, False
        cand: Sequence[int]
        if status is not None:
            cand = proj.by_status.get(status, [])
        elif created_on is not None:
            cand = proj.by_date.get(created_on, [])
        else:
            cand = range(len(proj.items))

        def ok(seq: int) -> bool:
            r = proj.items[seq]
            return (status is None or r.status == status) and (
                created_on is None or r.created_date == created_on
            )

        lo = bisect.bisect_right(cand, after.seq) if after is not None else 0
        hi = bisect.bisect_left(cand, before.seq) if before is not None else len(cand)
        picked: list[int] = []
        if after is not None:
            i = lo
            while i < hi and len(picked) < limit:
                if ok(cand[i]):
                    picked.append(cand[i])
                i += 1
            picked.reverse()
        else:
            i = hi - 1
            while i >= lo and len(picked) < limit:
                if ok(cand[i]):
                    picked.append(cand[i])
                i -= 1
        if not picked:
            return [], False, False
        newest, oldest = picked[0], picked[-1]
        j = bisect.bisect_left(cand, oldest) - 1
        older = any(ok(cand[k]) for k in range(j, -1, -1))
        k0 = bisect.bisect_right(cand, newest)
        newer = any(ok(cand[k]) for k in range(k0, len(cand)))
        return [proj.items[s] for s in picked], older, newer
