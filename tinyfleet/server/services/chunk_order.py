"""Chunk requests that need no answer: the same chunk left after they arrived (a device's retry)."""

from __future__ import annotations

import threading
import time
from collections import deque


class ChunkRequestOrder:
    """Which chunk requests arrived before the same chunk was served (so the device gets it anyway).

    A device asks again when a chunk is late; under load both requests wait in the gateway's queue, and
    answering both doubled the bytes sent. The gateway notes when each request arrives (network
    thread, `arrived`); the worker takes that time back when it handles the request (same payload, same
    order) and skips it if the chunk left after it arrived. A request whose arrival is unknown (tests
    calling `handle` directly) is always answered; a wrong skip only costs the device one retry."""

    LIMIT = 100_000  # remembered requests (a flood of odd payloads must not grow memory without bound)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: dict[tuple[str, bytes], deque[float]] = {}
        self._served: dict[str, tuple[str, int, float]] = {}  # device -> (package, offset, when)

    def arrived(self, device_id: str, payload: bytes, at: float) -> None:
        with self._lock:
            if len(self._arrivals) >= self.LIMIT:
                self._arrivals.clear()
            self._arrivals.setdefault((device_id, payload), deque(maxlen=8)).append(at)

    def withdraw(self, device_id: str, payload: bytes) -> None:
        """The gateway dropped the request (overload): it will arrive again."""
        with self._lock:
            queued = self._arrivals.get((device_id, payload))
            if queued:
                queued.pop()

    def take(self, device_id: str, payload: bytes) -> float | None:
        with self._lock:
            queued = self._arrivals.get((device_id, payload))
            if not queued:
                return None
            at = queued.popleft()
            if not queued:
                del self._arrivals[(device_id, payload)]
            return at

    def answered_already(self, device_id: str, package_id: str, offset: int, arrived: float | None) -> bool:
        last = self._served.get(device_id)
        return (
            arrived is not None
            and last is not None
            and last[:2] == (package_id, offset)
            and arrived < last[2]
        )

    def served(self, device_id: str, package_id: str, offset: int) -> None:
        self._served[device_id] = (package_id, offset, time.monotonic())
