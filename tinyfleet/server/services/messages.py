"""What the server does with device messages (PROTOCOL section 4), independent of the transport:
`DeviceMessages.handle(topic, payload)` returns the messages to publish in reply; `handle_batch` handles
several in one transaction (the rows they change loaded in a few queries; a savepoint each only when one
fails, see handle_batch). This module holds the batches (decoding, locks, the fast and careful paths);
what each kind of message does is message_handlers.py, the wire format device_wire.py. The MQTT gateway
feeds it from the broker; tests can feed it directly. Telemetry is not handled here: it has one path, the
batching writer (services/telemetry_ingest.py), which the gateway gives it to and tests call
(`write_now`)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from tinyfleet.server.db import AFTER_COMMIT, session_scope
from tinyfleet.server.models import Device, DeviceAction
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services.device_wire import (
    KINDS,
    MAX_JSON_BYTES,
    MAX_TELEMETRY_BYTES,
    Malformed,
    Outgoing,
    decode_chunk,
    decode_chunk_error,
    encode_chunk,
    encode_chunk_error,
    json_object,
    schema_checked,
    split_topic,
)
from tinyfleet.server.services.gateway_stats import GatewayStats
from tinyfleet.server.services.message_handlers import MessageHandlers, UnknownDevice
from tinyfleet.server.services.store_errors import (
    TRANSIENT_DB_ERRORS,
    StoreConflict,
    StoreUnavailable,
    store_error,
)

# Callers (the gateway, tests, bench, the conformance kit) import these from here; most are defined in
# the modules this one was split from: device_wire (the format), store_errors, gateway_stats and
# message_handlers (what each message does).
__all__ = [
    "KINDS",
    "MAX_TELEMETRY_BYTES",
    "TRANSIENT_DB_ERRORS",
    "DeviceMessages",
    "GatewayStats",
    "Outgoing",
    "StoreConflict",
    "StoreUnavailable",
    "decode_chunk",
    "decode_chunk_error",
    "encode_chunk",
    "encode_chunk_error",
    "lock_order",
    "split_topic",
    "store_error",
]

log = logging.getLogger(__name__)

# The kinds whose handling locks rows of the device (devices, device_actions): DeviceMessages._lock_devices.
ROW_LOCKING_KINDS = ("presence", "reported", "status")


def lock_order(items: Sequence[tuple[str, bytes]]) -> list[int]:
    """The indexes of a batch's messages sorted by device id, each device's in arrival order (a stable
    sort): every transaction takes row locks in the same order."""
    return sorted(range(len(items)), key=lambda i: items[i][0].split("/", 2)[1:2])


class DeviceMessages(MessageHandlers):
    def handle(self, topic: str, payload: bytes) -> list[Outgoing]:
        """Process one message; any problem with it is counted and logged, never raised, except that the
        database is unreachable (StoreUnavailable): the caller keeps the message and retries it."""
        out: list[Outgoing] = []
        self.handle_batch([(topic, payload)], out.append)
        return out

    def handle_batch(
        self,
        items: Sequence[tuple[str, bytes]],
        send: Callable[[Outgoing], None],
        answered: set[int] | None = None,
    ) -> int:
        """Process messages in one transaction, by device id and each device's in arrival order
        (lock_order). A message that is malformed or fails is counted and logged, and its changes (and
        after-commit effects) undone, without the others. Replies go to `send` as they are made.
        After-commit effects run once, after the commit. StoreUnavailable (the database is unreachable)
        rolls the whole batch back: the caller retries it, passing the same `answered`, in which the
        indexes of messages whose effects do not wait for the commit (chunk requests answered, messages
        refused as malformed or from unknown devices) are kept so that a retry does not repeat them.
        Telemetry belongs to the telemetry writer: given here, it is counted as a handler error.

        Fast path first (issue 12): the rows the batch changes are locked and loaded in a few queries, and
        the messages run without a savepoint each. A message that fails after it may have changed
        something (a bug, a bad capabilities object) undoes the whole batch, which then runs again with
        a savepoint and a fresh read per message (the failing one is undone alone)."""
        done = answered if answered is not None else set()
        decoded = self._decode(items, done)
        try:
            self._run(items, decoded, send, done, careful=False)
        except _Careful:
            self.stats.count("events", "careful_batches")
            self._run(items, decoded, send, done, careful=True)
        return len(items)

    def _decode(self, items: Sequence[tuple[str, bytes]], done: set[int]) -> dict[int, _Decoded]:
        """Topic and JSON of each message, without the database; those with a wrong topic are done with."""
        decoded: dict[int, _Decoded] = {}
        for index, (topic, payload) in enumerate(items):
            if index in done:
                continue
            parsed = split_topic(topic)
            if parsed is None:
                self.stats.count("malformed", "topic")
                log.warning("ignored message on unexpected topic %r", topic)
                done.add(index)
                continue
            device_id, kind = parsed
            if kind == "telemetry":  # a caller's bug: one path stores telemetry (telemetry_ingest)
                self.stats.count("events", "handler_error")
                log.error("telemetry from %s given to DeviceMessages, not to the telemetry writer", device_id)
                done.add(index)
                continue
            if not device_id.isprintable():
                self.stats.count("received", kind)
                self.stats.count("malformed", "topic")
                done.add(index)
                continue
            body: dict[str, Any] | bytes | Malformed = payload
            if kind != "chunk/req":
                try:
                    body = schema_checked(kind, json_object(payload, MAX_JSON_BYTES))
                except Malformed as exc:
                    body = exc
            decoded[index] = (device_id, kind, body)
        return decoded

    def _run(
        self,
        items: Sequence[tuple[str, bytes]],
        decoded: dict[int, _Decoded],
        send: Callable[[Outgoing], None],
        done: set[int],
        *,
        careful: bool,
    ) -> None:
        # Counters of what this run changes count once it commits; a message done with counts at once.
        tally: Counter[tuple[str, str]] = Counter()
        try:
            held = self._transaction(items, decoded, send, done, tally, careful=careful)
        except TRANSIENT_DB_ERRORS as exc:  # at the commit
            raise store_error(exc) from exc
        del held
        for (table, key), n in tally.items():
            self.stats.count(table, key, n)

    def _transaction(
        self,
        items: Sequence[tuple[str, bytes]],
        decoded: dict[int, _Decoded],
        send: Callable[[Outgoing], None],
        done: set[int],
        tally: Counter[tuple[str, str]],
        *,
        careful: bool,
    ) -> list[Device | DeviceAction]:
        finished: list[str] = []  # actions whose download is over: bytes_sent, for the batch at once
        with session_scope(self._db) as session:
            # Held for the batch: the session's identity map keeps its rows only while they are referenced.
            held = self._lock_devices(session, decoded, done, careful)
            for index in lock_order(items):  # by device id: see lock_order
                if index in done or index not in decoded:
                    continue
                device_id, kind, body = decoded[index]
                if isinstance(body, Malformed):
                    self.stats.count("received", kind)
                    self._failed(device_id, kind, body)
                    done.add(index)
                    continue
                if careful:
                    self.stats.count("received", kind)
                    replies = self._one(session, device_id, kind, body, finished)
                else:
                    try:
                        replies = self._dispatch(
                            session, device_id, kind, body, tally, finished, careful=False
                        )
                    except TRANSIENT_DB_ERRORS as exc:
                        raise store_error(exc) from exc
                    except (Malformed, UnknownDevice) as exc:  # raised before the message changed anything
                        self.stats.count("received", kind)
                        self._failed(device_id, kind, exc)
                        done.add(index)
                        continue
                    except Exception as exc:
                        raise _Careful from exc
                    if kind == "chunk/req":
                        self.stats.count("received", kind)
                    else:
                        tally["received", kind] += 1
                if kind == "chunk/req":
                    done.add(index)  # answered: not again in a retry
                for reply in replies:
                    send(reply)
            try:
                self._count_sent(session, finished)
                self.served.flush(session)  # the chunk bytes of this batch, for every replica to read
                session.flush()  # the fast path's changes: a failing one is a message's, run carefully
            except TRANSIENT_DB_ERRORS as exc:
                raise store_error(exc) from exc
            except Exception as exc:
                if careful:
                    raise
                raise _Careful from exc
        return held

    def _lock_devices(
        self, session: Session, decoded: dict[int, _Decoded], done: set[int], careful: bool
    ) -> list[Device | DeviceAction]:
        """Lock, in device id order and before anything else, the rows of the devices whose presence,
        reported state or status the batch changes. Row locks taken in message order deadlocked between
        replicas (one held device A and waited for B, the other the reverse; or one held a device's
        action and the other its device row); PostgreSQL then aborted one batch. The status of a device
        locks its action only while its device row is held, so no two batches wait on each other.
        The fast path then loads what it changes, locked: the rows of the devices with a presence or
        reported state, the actions of the statuses (into the session, which keeps them current: they
        are locked, and SQLite's writer holds the database), and the hardware classes of chunk requests."""
        wanted = [v for i, v in decoded.items() if i not in done and not isinstance(v[2], Malformed)]
        ids = {device_id for device_id, kind, _body in wanted if kind in ROW_LOCKING_KINDS}
        rows = sorted({device_id for device_id, kind, _body in wanted if kind in ("presence", "reported")})
        actions = sorted(
            {str(b["action_id"]) for _d, kind, b in wanted if kind == "status" and isinstance(b, dict)}
        )
        classes = {d for d, kind, _body in wanted if kind == "chunk/req" and d not in self._classes}
        held: list[Device | DeviceAction] = []
        try:
            if ids:
                stmt = select(Device.id).where(col(Device.id).in_(sorted(ids))).order_by(col(Device.id))
                session.exec(stmt.with_for_update()).all()
            if careful:
                return held
            if rows:
                # Without the JSON columns presence and reported states do not read (set_reported
                # replaces capabilities without reading them).
                unread = [defer(c) for c in (Device.desired, Device.tags, Device.capabilities)]  # type: ignore[arg-type]
                loaded = session.exec(select(Device).options(*unread).where(col(Device.id).in_(rows))).all()
                self._classes.update((d.id, d.hardware_class) for d in loaded)
                held.extend(loaded)
            if actions:
                stmt_a = select(DeviceAction).where(col(DeviceAction.id).in_(actions))
                held.extend(session.exec(stmt_a.order_by(col(DeviceAction.id)).with_for_update()).all())
            classes -= self._classes.keys()
            if classes:
                found = select(Device.id, Device.hardware_class).where(col(Device.id).in_(sorted(classes)))
                self._classes.update(dict(session.exec(found).all()))
        except TRANSIENT_DB_ERRORS as exc:
            raise store_error(exc) from exc
        return held

    def _one(
        self, session: Session, device_id: str, kind: str, body: dict[str, Any] | bytes, finished: list[str]
    ) -> list[Outgoing]:
        """One message of a careful batch, in a savepoint of the batch's transaction."""
        effects = list(session.info.get(AFTER_COMMIT, []))
        ends = len(finished)
        # Read afresh, as a transaction of its own would: others may have committed since the last one.
        session.expire_all()
        try:
            with session.begin_nested():
                return self._dispatch(session, device_id, kind, body, None, finished, careful=True)
        except TRANSIENT_DB_ERRORS as exc:
            raise store_error(exc) from exc
        except Exception as exc:
            session.info[AFTER_COMMIT] = effects  # those this message registered are undone with it
            del finished[ends:]
            self._failed(device_id, kind, exc)
        return []

    def _failed(self, device_id: str, kind: str, exc: Exception) -> None:
        if isinstance(exc, (Malformed, devsvc.BadCapabilities)):  # capabilities: set_reported
            self.stats.count("malformed", kind)
            log.warning("malformed %s from %s: %s", kind, device_id, exc)
        elif isinstance(exc, UnknownDevice):
            self.stats.count("events", "unknown_device")
            log.warning("%s from unknown device %r ignored", kind, device_id)
        else:  # a bug with one message must not kill the gateway; counted and logged
            self.stats.count("events", "handler_error")
            log.error("error handling %s from %s", kind, device_id, exc_info=exc)


class _Careful(Exception):
    """A message of a fast batch failed after it may have changed something: run the batch carefully."""


# A message's device id, kind and body: the JSON object (valid per its schema), why it is not, or the raw
# payload of a chunk request.
_Decoded = tuple[str, str, "dict[str, Any] | bytes | Malformed"]
