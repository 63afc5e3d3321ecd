"""The lease: the right to submit for one output root, held by one run (or the shards of one
backfill) at a time.

A small JSON object (``<root>/_ledger/lease.json``) with an expiry that a heartbeat renews,
created and replaced with conditional writes (:class:`~voxlake.lake.ledger.store.Store`). A
second run refuses with a clear message, unless it belongs to the same lease *group* (the
shards of one backfill), or the holder is dead: on the same host its pid is gone (a crashed
run is taken over at once), elsewhere the lease has expired.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import threading
from dataclasses import asdict, dataclass

from voxlake.errors import VoxlakeError
from voxlake.lake.ledger.events import LEDGER_DIR
from voxlake.lake.ledger.store import Store

logger = logging.getLogger(__name__)

LEASE_FILE = f"{LEDGER_DIR}/lease.json"
#: How long a lease lives without a heartbeat, and how often the heartbeat renews it.
LEASE_TTL_S = 300.0
HEARTBEAT_S = 60.0


# --- errors -----------------------------------------------------------------------------------


class LeaseHeldError(VoxlakeError):
    """Another run holds the output root's lease: this run submits nothing. Terminal."""


class LeaseLostError(VoxlakeError):
    """This run's lease was taken over (its heartbeat stalled past the expiry). Terminal."""


# --- the lease --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    group: str
    run_id: str
    host: str
    pid: int
    acquired_at: str
    expires_at: str

    def expired(self, now: dt.datetime) -> bool:
        return dt.datetime.fromisoformat(self.expires_at) <= now

    def holder_dead(self) -> bool:
        """True only when the holder certainly died: it ran on this host and its pid is gone."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        return (
            f"run {self.run_id} (group {self.group}, host {self.host}, pid {self.pid}), "
            f"lease until {self.expires_at}"
        )


class Lease:
    """The right to submit for one output root, shared by the runs of one ``group``."""

    def __init__(self, store: Store, *, run_id: str, group: str | None) -> None:
        self._store = store
        self.run_id = run_id
        self.group = group or run_id
        self.acquired = False  # True: this run created (or took over) the lease
        self.lost = threading.Event()
        self._tag: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _info(self, now: dt.datetime, run_id: str | None = None) -> LeaseInfo:
        return LeaseInfo(
            group=self.group,
            run_id=run_id or self.run_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            acquired_at=now.isoformat(),
            expires_at=(now + dt.timedelta(seconds=LEASE_TTL_S)).isoformat(),
        )

    def acquire(self) -> None:
        for _ in range(10):
            now = dt.datetime.now(dt.UTC)
            current = self._store.read_versioned(LEASE_FILE)
            if current is None:
                if self._store.create(LEASE_FILE, _encode(self._info(now))):
                    self.acquired = True
                    break
                continue
            data, tag = current
            held = LeaseInfo(**json.loads(data))
            if held.group == self.group:
                # A shard of the same backfill (or this run again): share it, keep the holder.
                self.acquired = held.run_id == self.run_id
                renewed = dataclasses.replace(held, expires_at=self._info(now).expires_at)
                if self._store.replace_if(LEASE_FILE, _encode(renewed), tag):
                    break
                continue
            if held.expired(now) or held.holder_dead():
                logger.warning("taking over the output root's lease from %s", held.describe())
                if self._store.replace_if(LEASE_FILE, _encode(self._info(now)), tag):
                    self.acquired = True
                    break
                continue
            raise LeaseHeldError(
                f"the output root {self._store.root} is in use by {held.describe()}. This run "
                "submitted nothing. Run again when that run has finished (a run that died on "
                "another machine releases the root when its lease expires)."
            )
        else:
            raise LeaseHeldError(f"could not take the lease of {self._store.root}: contended")
        current = self._store.read_versioned(LEASE_FILE)
        if current is None:  # written a moment ago: only another machine can have removed it
            raise LeaseLostError(f"the lease of {self._store.root} vanished as it was taken")
        self._tag = current[1]
        self._heartbeat = threading.Thread(target=self._beat, name="voxlake-lease", daemon=True)
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._renew()
            except Exception as exc:  # storage blip: the next beat tries again before expiry
                logger.warning("lease heartbeat failed: %s", exc)

    def _renew(self) -> None:
        current = self._store.read_versioned(LEASE_FILE)
        if current is None or LeaseInfo(**json.loads(current[0])).group != self.group:
            logger.error("the output root's lease was taken over; stopping submissions")
            self.lost.set()
            return
        held = LeaseInfo(**json.loads(current[0]))
        renewed = dataclasses.replace(
            held, expires_at=self._info(dt.datetime.now(dt.UTC)).expires_at
        )
        self._store.replace_if(LEASE_FILE, _encode(renewed), current[1])

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLostError(
                f"this run lost the lease of {self._store.root} to another run; it stopped "
                "submitting. Run again to finish: the ledger knows what was submitted."
            )

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=30)
        if not self.acquired or self.lost.is_set():
            return  # a shard leaves the group's lease to the run that took it
        current = self._store.read_versioned(LEASE_FILE)
        if current is not None and LeaseInfo(**json.loads(current[0])).run_id == self.run_id:
            self._store.delete(LEASE_FILE)


def _encode(info: LeaseInfo) -> bytes:
    return json.dumps(asdict(info), sort_keys=True).encode()
