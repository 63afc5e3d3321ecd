"""The local server's state on disk: uploads and transcripts that outlive the process.

With ``EmulatorConfig.state_dir`` set, the server keeps, under that directory::

    lock                     held (flock) by the one server using the directory
    uploads/<id>.upload      the uploaded bytes
    uploads/<id>.json        who uploaded them, when, how many bytes
    transcripts/<id>.json    one transcript: request, status, timestamps, engine result
    downloads/               media fetched from remote audio_url (deleted after each job)

Every JSON file is written whole, to a temporary name and renamed over the old one, so a
process killed at any instant (``kill -9``, Ctrl-C) leaves each file either as it was or as it
is now. A transcript is written when it is created and each time its status changes, the
engine's result with its ``completed`` status, so a restarted server answers for every job it
accepted: completed ones with their words, failed ones with their error, and queued or
processing ones it queues again, oldest first (:meth:`StateDir.load`).

A webhook's auth header value is kept, as AssemblyAI keeps it: a restored job must still
authenticate its notification, or a receiver that checks the header refuses it and the
notification is lost. The state directory's JSON files are therefore written readable by their
owner only (0600). Not kept: the raw API keys (a project is its key's fingerprint, as in stats),
the webhook's last status code, and the stats counters. Without ``state_dir`` (the default,
and what the tests and benchmarks use) nothing here runs: the server keeps everything in
memory, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from voxlake.emulator.engines import EngineResult, EngineWord
from voxlake.emulator.store import TranscriptRecord, Upload

_TMP = ".tmp"
#: Bumped when the record layout changes incompatibly; other versions are not loaded.
FORMAT = 1


class StateDirInUseError(RuntimeError):
    """Another live server process uses the state directory."""


class StateDir:
    """One server's hold on a state directory (see the module doc)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploads = root / "uploads"
        self.transcripts = root / "transcripts"
        self.downloads = root / "downloads"
        for folder in (self.uploads, self.transcripts, self.downloads):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock: IO[bytes] | None = open(root / "lock", "a+b")  # noqa: SIM115  held until close
        try:
            # Released by the kernel when this process ends, however it ends.
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise StateDirInUseError(
                f"the local server's state directory {root} is in use by another process"
            ) from None

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- writing -------------------------------------------------------------------------------
    def save_upload(self, up: Upload) -> None:
        _write_json(
            self.uploads / f"{up.id}.json",
            {"id": up.id, "project": up.project, "size": up.size, "created_at": up.created_at},
        )

    def forget_upload(self, up: Upload) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.uploads / f"{up.id}.json").unlink()

    def save_transcript(self, rec: TranscriptRecord) -> None:
        _write_json(self.transcripts / f"{rec.id}.json", _record_json(rec))

    # -- reading -------------------------------------------------------------------------------
    def load_uploads(self) -> list[Upload]:
        """The finished uploads; a partial one (its process died mid-upload) is deleted."""
        found: list[Upload] = []
        for meta in self.uploads.glob("*.json"):
            data = json.loads(meta.read_text())
            path = self.uploads / f"{data['id']}.upload"
            if path.exists():
                found.append(
                    Upload(data["id"], data["project"], path, data["size"], data["created_at"])
                )
        known = {up.path for up in found}
        for leftover in self.uploads.iterdir():
            if leftover.name.endswith(_TMP) or (
                leftover.suffix == ".upload" and leftover not in known
            ):
                leftover.unlink(missing_ok=True)
        for leftover in self.downloads.iterdir():  # a job's fetched media, never finished
            leftover.unlink(missing_ok=True)
        return found

    def load_transcripts(self) -> list[TranscriptRecord]:
        """Every transcript, in the order they were created."""
        records: list[TranscriptRecord] = []
        for path in self.transcripts.iterdir():
            if path.name.endswith(_TMP):
                path.unlink(missing_ok=True)
                continue
            data = json.loads(path.read_text())
            if data.get("format") == FORMAT:
                records.append(_record(data))
        records.sort(key=lambda rec: rec.order)
        return records


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{_TMP}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


def _record_json(rec: TranscriptRecord) -> dict[str, Any]:
    result = None
    if rec.result is not None:
        res = rec.result
        result = {
            # Columns, not one object per word: a long transcript's file stays small.
            "words": [
                [w.text, w.start, w.end, w.confidence, w.speaker, w.channel] for w in res.words
            ],
            "audio_duration": res.audio_duration,
            "language_code": res.language_code,
            "speech_model_used": res.speech_model_used,
            "audio_channels": res.audio_channels,
            "language_confidence": res.language_confidence,
            "extra": res.extra,
        }
    return {
        "format": FORMAT,
        "order": rec.order,
        "id": rec.id,
        "project": rec.project,
        "audio_url": rec.audio_url,
        "params": rec.params,
        "created": rec.created,
        "upload_id": rec.upload_id,
        "status": rec.status,
        "throttled": rec.throttled,
        "completed": rec.completed,
        "error": rec.error,
        "deleted": rec.deleted,
        "extra_echo": rec.extra_echo,
        "webhook_auth_header_value": (
            None
            if rec.webhook_auth_header_value is None
            else rec.webhook_auth_header_value.get_secret_value()
        ),
        "result": result,
    }


def _record(data: dict[str, Any]) -> TranscriptRecord:
    result = None
    if data["result"] is not None:
        res = dict(data["result"])
        res["words"] = [EngineWord(*w) for w in res["words"]]
        result = EngineResult(**res)
    secret = data.get("webhook_auth_header_value")
    return TranscriptRecord(
        webhook_auth_header_value=None if secret is None else SecretStr(secret),
        id=data["id"],
        project=data["project"],
        seq=-1,  # set when the store takes it back
        order=data["order"],
        audio_url=data["audio_url"],
        params=data["params"],
        created=data["created"],
        created_date=data["created"][:10],
        upload_id=data["upload_id"],
        status=data["status"],
        throttled=data["throttled"],
        completed=data["completed"],
        result=result,
        error=data["error"],
        deleted=data["deleted"],
        extra_echo=data["extra_echo"],
    )
