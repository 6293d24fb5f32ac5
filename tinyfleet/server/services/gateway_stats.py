"""The gateway's counters."""

from __future__ import annotations

import threading
from collections import Counter


class GatewayStats:
    """Counters exposed at GET /api/gateway/stats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received: Counter[str] = Counter()
        self.malformed: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        # Well-formed telemetry refused (wrong_model, out_of_range, rate_limited), in reports.
        self.rejected: Counter[str] = Counter()

    def count(self, table: str, key: str, n: int = 1) -> None:
        with self._lock:
            getattr(self, table)[key] += n

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "received": dict(self.received),
                "malformed": dict(self.malformed),
                "events": dict(self.events),
                "rejected": dict(self.rejected),
            }
