"""A background job that runs `run_once` every `interval` seconds on its own thread.

The drift alarms and telemetry retention share this loop: a failed run (e.g. the database is down for a
while) is logged and kept in `last_error`, and the next run simply tries again.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class PeriodicJob:
    name = "periodic job"

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def enabled(self) -> bool:
        return self._interval > 0

    def run_once(self) -> object:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.run_once()
                self.last_error = None
            except Exception as exc:  # a failed run must not end the loop: try again next time
                self.last_error = str(exc)
                log.warning("%s failed: %s", self.name, exc)

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
