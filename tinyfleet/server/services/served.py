"""Chunk bytes the gateway served, per (device, package id), in memory: counting happens on the chunk
path without touching the database; status messages and rollout ticks copy the totals into the device's
action (`bytes_sent`)."""

from __future__ import annotations

import threading
from collections import Counter


class ServedBytes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: Counter[tuple[str, str]] = Counter()

    def add(self, device_id: str, package_id: str, n: int) -> None:
        with self._lock:
            self._bytes[(device_id, package_id)] += n

    def get(self, device_id: str, package_id: str) -> int:
        with self._lock:
            return self._bytes.get((device_id, package_id), 0)

    def reset(self, device_id: str, package_id: str) -> None:
        """A new action starts sending this package to this device: count from zero."""
        with self._lock:
            self._bytes.pop((device_id, package_id), None)
