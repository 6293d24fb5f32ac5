"""Alerts: stored, de-duplicated (one open alert per kind and model version) and sent to webhooks.

Webhooks get a JSON POST when an alert opens or resolves. Delivery runs on its own thread with retries
and exponential back-off, after the commit that changed the alert: a slow or failing receiver never
holds up the check that raised it (nor its transaction). Outcomes are counted in `WebhookNotifier`.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlmodel import Session, col, select

from tinyfleet.server.db import after_commit
from tinyfleet.server.models import Alert

log = logging.getLogger(__name__)

STATES = ("open", "resolved")
TIMEOUT_S = 10.0


def public(a: Alert) -> dict[str, Any]:
    return {
        "id": a.id,
        "kind": a.kind,
        "model_version_id": a.model_version_id,
        "state": a.state,
        "opened_at": a.opened_at,
        "last_seen_at": a.last_seen_at,
        "resolved_at": a.resolved_at,
        "numbers": a.numbers,
        "message": a.message,
    }


def list_alerts(
    session: Session, *, state: str | None = None, model_version_id: int | None = None, limit: int = 500
) -> list[Alert]:
    stmt = select(Alert).order_by(col(Alert.id).desc()).limit(limit)
    if state is not None:
        stmt = stmt.where(Alert.state == state)
    if model_version_id is not None:
        stmt = stmt.where(Alert.model_version_id == model_version_id)
    return list(session.exec(stmt))


def open_alert(session: Session, kind: str, model_version_id: int) -> Alert | None:
    stmt = select(Alert).where(
        Alert.kind == kind, Alert.model_version_id == model_version_id, Alert.state == "open"
    )
    return session.exec(stmt).first()


@dataclass
class WebhookNotifier:
    """POSTs alert events to every URL on a background thread; each URL gets up to `attempts` tries,
    `backoff` x 2^k seconds apart. `delivered` / `failed` count events per URL, `attempts_made` POSTs."""

    urls: tuple[str, ...]
    attempts: int = 5
    backoff: float = 1.0
    delivered: int = 0
    failed: int = 0
    attempts_made: int = 0
    _queue: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event (never blocks); the delivery thread starts with the first event."""
        if not self.urls:
            return
        with self._lock:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="alert-webhooks", daemon=True)
                self._thread.start()
        self._queue.put(event)

    def wait_idle(self, timeout: float) -> bool:
        """True once every queued event was delivered or given up on (for tests and shutdown)."""
        done = threading.Event()

        def join() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=join, daemon=True).start()
        return done.wait(timeout)

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._queue.put(None)
            thread.join(timeout=15)

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            try:
                if event is None:
                    return
                for url in self.urls:
                    self._deliver(url, event)
            finally:
                self._queue.task_done()

    def _deliver(self, url: str, event: dict[str, Any]) -> None:
        last = ""
        for k in range(self.attempts):
            if k and self._stop.wait(self.backoff * 2 ** (k - 1)):
                break  # shutting down: give up on the remaining tries
            self.attempts_made += 1
            try:
                resp = httpx.post(url, json=event, timeout=TIMEOUT_S)
                if resp.status_code < 300:
                    self.delivered += 1
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
        self.failed += 1
        log.warning(
            "alert webhook %s: gave up on alert %s (%s): %s", url, event["alert"]["id"], event["event"], last
        )


def notify(session: Session, notifier: WebhookNotifier | None, event: str, alert: Alert) -> None:
    """Send `event` ("opened" / "resolved") about `alert` once this transaction has committed."""
    if notifier is None or not notifier.urls:
        return
    session.flush()  # the alert's id
    body = {"event": event, "alert": public(alert)}
    after_commit(session, lambda: notifier.send(body))
