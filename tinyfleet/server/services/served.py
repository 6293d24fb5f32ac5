"""Chunk bytes the gateway served, per (device, package id). Status messages and rollout ticks copy the
totals into the device's action (`bytes_sent`).

With several replicas a device's chunk requests are spread over all of them (shared subscriptions) and
its status may reach any one, so the totals live in the database (table `served_bytes`). The chunk path
itself does not touch the database: it counts in memory, and the gateway's batch transaction adds what
was counted to the table (`flush`, one upsert per batch); the in-memory part is dropped once that
transaction commits, and kept for the retry if it rolls back.
"""

from __future__ import annotations

import threading
from collections import Counter
from functools import partial

from sqlalchemy import text
from sqlmodel import Session

from tinyfleet.server.db import after_commit

_ADD = text(
    "INSERT INTO served_bytes (device_id, package_id, bytes) VALUES (:d, :p, :n)"
    " ON CONFLICT (device_id, package_id) DO UPDATE SET bytes = served_bytes.bytes + excluded.bytes"
)
_GET = text("SELECT bytes FROM served_bytes WHERE device_id = :d AND package_id = :p")
_RESET = text("DELETE FROM served_bytes WHERE device_id = :d AND package_id = :p")


class ServedBytes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, str]] = Counter()  # counted here, not yet committed

    def add(self, device_id: str, package_id: str, n: int) -> None:
        with self._lock:
            self._pending[(device_id, package_id)] += n

    def flush(self, session: Session) -> None:
        """Add what was counted to the table in the caller's transaction; forgotten here once it commits."""
        with self._lock:
            taken = Counter(self._pending)
        if not taken:
            return
        # In key order: replicas' batches upserting the same rows in different orders deadlocked.
        rows = [{"d": d, "p": p, "n": n} for (d, p), n in sorted(taken.items())]
        session.execute(_ADD, rows)
        after_commit(session, partial(self._written, taken))

    def _written(self, taken: Counter[tuple[str, str]]) -> None:
        with self._lock:
            self._pending.subtract(taken)
            for key in [k for k, n in self._pending.items() if n <= 0]:
                del self._pending[key]

    def get(self, session: Session, device_id: str, package_id: str) -> int:
        stored = session.execute(_GET, {"d": device_id, "p": package_id}).scalar()
        with self._lock:
            return int(stored or 0) + self._pending.get((device_id, package_id), 0)

    def reset(self, session: Session, device_id: str, package_id: str) -> None:
        """A new action starts sending this package to this device: count from zero."""
        session.execute(_RESET, {"d": device_id, "p": package_id})
        with self._lock:
            self._pending.pop((device_id, package_id), None)
