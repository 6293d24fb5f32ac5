"""Telemetry ingest sized for fleets: device reports are stored in batches by one writer thread.

The MQTT gateway's network thread submits each telemetry message (PROTOCOL 4.5) to a bounded queue. The
writer takes up to `batch_max` messages, or what arrived within `batch_ms` of the first, checks each
message alone (a malformed or implausible one is counted and refused without the others) and stores
the reports of all the others in one transaction (telemetry.store_batch: one multi-row INSERT,
de-duplicated by (device, boot, seq), rollups updated for the whole batch). Only after the commit does
it call each message's `on_stored`, with which the gateway acknowledges it to the broker (QoS 1 PUBACK).

Back-pressure, never loss: when the queue is full, submit() blocks the caller (paho's network thread
then stops reading and the broker keeps the messages); while the database is unreachable the writer
retries the same batch with back-off and acknowledges nothing. Stopping stores what is queued first.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from tinyfleet.server.db import session_scope
from tinyfleet.server.models import Device
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import telemetry as telsvc
from tinyfleet.server.services.device_wire import MAX_TELEMETRY_BYTES
from tinyfleet.server.services.gateway_stats import GatewayStats
from tinyfleet.server.services.store_errors import (
    TRANSIENT_DB_ERRORS,
    StoreConflict,
    StoreUnavailable,
    store_error,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")
RETRY_MIN_S, RETRY_MAX_S = 0.1, 5.0
POLL_S = 0.1  # how often blocked or idle threads look at the stop flag


@dataclass(frozen=True)
class IngestItem:
    """One telemetry message; `on_stored` runs once it is stored or refused for good (never retried)."""

    device_id: str
    payload: bytes
    on_stored: Callable[[], None] | None = None
    after: int = 0  # how many other device messages the gateway had queued for its worker before it
    number: int = 0  # place in submit order


class TelemetryIngest:
    """The bounded queue and its writer thread. Counters go to the gateway's GatewayStats (received,
    malformed, rejected; events telemetry_rows, telemetry_duplicates, telemetry_batches, ...)."""

    def __init__(
        self,
        db: Engine,
        stats: GatewayStats,
        *,
        batch_max: int = 1000,
        batch_ms: float = 20.0,
        queue_max: int = 5000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if batch_max < 1 or batch_ms < 0 or queue_max < 1:
            raise ValueError("telemetry batch_max and queue_max must be positive, batch_ms not negative")
        self._db = db
        self.stats = stats
        self.batch_max, self.batch_ms, self.queue_max = batch_max, batch_ms, queue_max
        self._clock = clock
        self._queue: queue.Queue[IngestItem] = queue.Queue(maxsize=queue_max)
        self._tracks: dict[str, telsvc.DeviceTrack] = {}
        self._stopping = threading.Event()  # no new messages; the writer empties the queue and ends
        self._abort = threading.Event()  # give up a batch the database refuses to take (at shutdown)
        self._thread: threading.Thread | None = None
        self._in_batch = 0
        self.store_down = False
        # Telemetry and the device's other messages are handled by two threads but checked in the order
        # they arrived: a report against the reported state (active model) sent before it, not after.
        # The gateway sets handled_up_to: wait until its worker handled n messages, return how many it
        # has (None when stopping); its worker calls wait_validated before handling a reported state.
        self.handled_up_to: Callable[[int], int | None] | None = None
        self.submitted = 0
        self._numbers = itertools.count(1)
        self._validated = 0
        self._validated_cond = threading.Condition()

    # --- producer side (the MQTT network thread) -------------------------------------------------

    def submit(
        self, device_id: str, payload: bytes, on_stored: Callable[[], None] | None = None, after: int = 0
    ) -> bool:
        """Queue one message, blocking while the queue is full. False once stopping: the message is not
        taken (and not acknowledged, so the broker delivers it again to the next session)."""
        self.stats.count("received", "telemetry")
        self.submitted = number = next(self._numbers)
        item = IngestItem(device_id, payload, on_stored, after, number)
        blocked = False
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                if not blocked:
                    blocked = True
                    self.stats.count("events", "telemetry_backpressure")
        return False

    def write_now(self, messages: Iterable[tuple[str, bytes]]) -> bool:
        """Store (device_id, payload) messages as one batch on the caller's thread, through the same checks
        and store as the writer, counted as received: for callers without a broker (tests, tools). Not
        while the writer runs (its per-device tracks are its own)."""
        if self.running:
            raise RuntimeError("write_now is for a telemetry writer that is not running")
        batch = []
        for device_id, payload in messages:
            self.stats.count("received", "telemetry")
            self.submitted = number = next(self._numbers)
            batch.append(IngestItem(device_id, payload, number=number))
        return not batch or self.write(batch)

    @property
    def depth(self) -> int:
        """Messages waiting or being written."""
        return self._queue.qsize() + self._in_batch

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        self._stopping.clear()
        self._abort.clear()
        self._thread = threading.Thread(target=self._run, name="tinyfleet-telemetry", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new messages, store the queued ones, then end. If the database stays unreachable for
        `timeout` seconds, give up: what is left is unacknowledged and the broker keeps it."""
        self._stopping.set()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "database unreachable at shutdown; %d telemetry messages left to the broker", self.depth
            )
            self._abort.set()
            self._thread.join(RETRY_MAX_S + 1)
        self._thread = None

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every queued message is stored or refused (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def forget_device(self, device_id: str) -> None:
        self._tracks.pop(device_id, None)

    # --- the writer -------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            self._in_batch = len(batch)
            try:
                self.write(batch)
            except Exception:  # a bug must not end ingest; the batch stays unacknowledged
                self.stats.count("events", "handler_error")
                log.exception("error storing a batch of %d telemetry messages", len(batch))
            finally:
                self._in_batch = 0
                self._mark_validated(batch[-1].number)  # done with, even if given up: never wait on it
                for _ in batch:
                    self._queue.task_done()

    def _take(self) -> list[IngestItem] | None:
        """The next batch; None once stopping and the queue is empty."""
        while True:
            try:
                batch = [self._queue.get(timeout=POLL_S)]
                break
            except queue.Empty:
                if self._stopping.is_set() or self._abort.is_set():
                    return None
        deadline = time.monotonic() + self.batch_ms / 1000
        while len(batch) < self.batch_max:
            # Past the deadline (or stopping) take only what is already queued; before it, wait in short
            # slices so that a stop request is seen at once.
            wait = 0.0 if self._stopping.is_set() else min(deadline - time.monotonic(), POLL_S)
            try:
                batch.append(self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait())
            except queue.Empty:
                if wait <= 0:
                    break
        return batch

    def write(self, batch: list[IngestItem]) -> bool:
        """Check and store one batch, then call each message's on_stored. False if stopped while the
        database was unreachable (then nothing is acknowledged)."""
        now = self._clock()
        parsed: list[tuple[IngestItem, list[telsvc.ReportRow] | None]] = []
        for item in batch:
            rows = None
            try:
                rows = telsvc.parse_rows(item.device_id, _decode(item.payload), now)
            except ValueError as exc:  # never accepted however often delivered: refused for good
                self.stats.count("malformed", "telemetry")
                log.warning("malformed telemetry from %s: %s", item.device_id, exc)
            except Exception:  # a bug with one message must not hold up the others
                self.stats.count("events", "handler_error")
                log.exception("error reading telemetry from %s", item.device_id)
            parsed.append((item, rows))
        accepted: list[tuple[IngestItem, list[telsvc.ReportRow]]] = []
        start = 0
        while start < len(parsed):
            end = self._ready(parsed, start)
            if end is None:
                return False
            checked = self._check(parsed[start:end], now)
            if checked is None:
                return False
            accepted += checked
            self._mark_validated(parsed[end - 1][0].number)
            start = end
        if self._retrying(partial(self._store, accepted)) is None:
            return False
        self.stats.count("events", "telemetry_batches")
        for item in batch:
            if item.on_stored is not None:
                item.on_stored()
        return True

    def _ready(self, parsed: list[tuple[IngestItem, Any]], start: int) -> int | None:
        """End of the run of messages from `start` whose preceding other messages (a reported state
        above all: it names the active model) the gateway worker has handled; waits for the first."""
        if self.handled_up_to is None:
            return len(parsed)
        handled = self.handled_up_to(parsed[start][0].after)
        if handled is None:
            return None
        end = start + 1
        while end < len(parsed) and parsed[end][0].after <= handled:
            end += 1
        return end

    def _check(
        self, run: list[tuple[IngestItem, list[telsvc.ReportRow] | None]], now: float
    ) -> list[tuple[IngestItem, list[telsvc.ReportRow]]] | None:
        """The messages of a run that are plausible for their devices' active models (one query)."""
        ids = {item.device_id for item, rows in run if rows is not None}
        active = self._retrying(partial(self._active_models, ids))
        if active is None:
            return None
        return [(i, rows) for i, rows in run if rows is not None and self._admit(i, rows, active, now)]

    def _mark_validated(self, number: int) -> None:
        with self._validated_cond:
            self._validated = max(self._validated, number)
            self._validated_cond.notify_all()

    def wait_validated(self, number: int, stop: threading.Event) -> bool:
        """Wait until the telemetry messages up to `number` (in submit order) were checked against their
        devices' state: the gateway worker calls it before it handles a new reported state."""
        with self._validated_cond:
            while self._validated < number:
                if stop.is_set() or self._abort.is_set() or not self.running:
                    return False
                self._validated_cond.wait(POLL_S)
        return True

    def _active_models(self, device_ids: set[str]) -> dict[str, str | None]:
        if not device_ids:
            return {}
        with session_scope(self._db) as session:
            return telsvc.active_models(session, device_ids)

    def _admit(
        self, item: IngestItem, rows: list[telsvc.ReportRow], active: dict[str, str | None], now: float
    ) -> bool:
        if item.device_id not in active:
            self.stats.count("events", "unknown_device")
            log.warning("telemetry from unknown device %r ignored", item.device_id)
            return False
        track = self._tracks.setdefault(item.device_id, telsvc.DeviceTrack())
        active_sha = active[item.device_id]
        sha = rows[0].model_sha256 if rows else None
        if sha and sha != active_sha and self._retrying(partial(self._switching_to, item.device_id, sha)):
            active_sha = sha
        try:
            gaps = telsvc.admit(rows, active_sha, track, now)
        except telsvc.Rejected as exc:
            self.stats.count("rejected", exc.reason, max(1, len(rows)))
            log.warning("telemetry from %s refused: %s", item.device_id, exc)
            return False
        if gaps:
            self.stats.count("events", "telemetry_gaps", gaps)
        return True

    def _switching_to(self, device_id: str, sha: str) -> bool:
        """Whether the device is switching to or from this model: the one its desired state installs, or
        the one in its other slot. With replicas (shared subscriptions) its reported state saying so may be
        handled by another replica after this report, so the order barrier of one gateway cannot help."""
        with session_scope(self._db) as session:
            device = session.get(Device, device_id)
            if device is None:
                return False
            other = devsvc.other_slot(device.reported) or {}
            return sha in ((device.desired or {}).get("model_sha256"), other.get("model_sha256"))

    def _store(self, accepted: list[tuple[IngestItem, list[telsvc.ReportRow]]]) -> bool:
        try:
            self._store_rows([r for _, rows in accepted for r in rows])
            return True
        except TRANSIENT_DB_ERRORS as exc:
            raise store_error(exc) from exc
        except Exception:
            # A message the database refuses (its device was deleted meanwhile): store them one by one.
            log.exception("could not store %d telemetry messages together; one by one", len(accepted))
        for _, rows in accepted:
            try:
                self._store_rows(rows)
            except TRANSIENT_DB_ERRORS as exc:
                raise store_error(exc) from exc
            except Exception:
                self.stats.count("events", "telemetry_refused_by_db", len(rows))
        return True

    def _store_rows(self, rows: list[telsvc.ReportRow]) -> None:
        if not rows:
            return
        with session_scope(self._db) as session:
            stored = len(telsvc.store_batch(session, rows))
        self.stats.count("events", "telemetry_rows", stored)
        if stored < len(rows):
            self.stats.count("events", "telemetry_duplicates", len(rows) - stored)

    def _retrying(self, fn: Callable[[], _T]) -> _T | None:
        """fn() until the database answers (back-off up to RETRY_MAX_S); None if aborted meanwhile."""
        delay = RETRY_MIN_S
        while True:
            try:
                result = fn()
            except StoreConflict as exc:  # another replica's transaction won a deadlock: run it again
                log.warning(
                    "database conflict with another replica, telemetry retried: %s", str(exc).split("\n")[0]
                )
                self.stats.count("events", "db_conflict_retries")
                if self._abort.wait(RETRY_MIN_S):
                    return None
                continue
            except (StoreUnavailable, *TRANSIENT_DB_ERRORS) as exc:
                if not self.store_down:
                    log.warning("database unreachable (%s); holding telemetry and retrying", exc)
                self.store_down = True
                self.stats.count("events", "db_retries")
                if self._abort.wait(delay):
                    return None
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self.store_down:
                log.warning("database reachable again; storing held telemetry")
                self.store_down = False
            return result


def _decode(payload: bytes) -> Any:
    if len(payload) > MAX_TELEMETRY_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes is above {MAX_TELEMETRY_BYTES}")
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raise ValueError("payload is not UTF-8 JSON") from None
