"""What the server does with each device message (PROTOCOL section 4), independent of the transport:
`DeviceMessages.handle(topic, payload)` returns the messages to publish in reply; `handle_batch` handles
several in one transaction (the rows they change loaded in a few queries; a savepoint each only when one
fails, see handle_batch). The MQTT gateway feeds it from the broker; tests can
feed it directly. Telemetry is not handled here: it has one path, the batching writer
(services/telemetry_ingest.py), which the gateway gives it to and tests call (`write_now`)."""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from tinyfleet.server.db import AFTER_COMMIT, after_commit, session_scope
from tinyfleet.server.models import Device, DeviceAction
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import registry
from tinyfleet.server.services import rollouts as rsvc
from tinyfleet.server.services.chunk_order import ChunkRequestOrder
from tinyfleet.server.services.devices import PHASES
from tinyfleet.server.services.errors import NotFound
from tinyfleet.server.services.packages import PackageCache
from tinyfleet.server.services.served import ServedBytes
from tinyfleet.server.services.wire_validation import check_message
from tinyfleet.server.services.wire_validation import prewarm as prewarm_validators
from tinyfleet.signing.codes import ErrorCode

log = logging.getLogger(__name__)

CHUNK_FORMAT = 1
CHUNK_ERROR_FORMAT = 0xFF  # first byte of the reply to a malformed chunk request (PROTOCOL 4.3)
CHUNK_ERROR_REASON_MAX = 200
MAX_JSON_BYTES = 16 * 1024
MAX_TELEMETRY_BYTES = 256 * 1024
CHUNK_LIMIT_TTL = 5.0  # seconds a hardware class's chunk size is cached
KINDS = ("reported", "presence", "chunk/req", "status", "telemetry")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool = False


class Malformed(ValueError):
    """A device message that breaks PROTOCOL section 4; counted and logged, never fatal."""


class StoreUnavailable(Exception):
    """The database could not be reached: the message is kept (not acknowledged) and handled again."""


class StoreConflict(StoreUnavailable):
    """PostgreSQL broke a deadlock (or a serialization conflict) with another replica's transaction by
    rolling this one back: the database is fine, the batch is simply run again."""


# SQLSTATE of a transaction PostgreSQL rolled back to break a conflict: deadlock, serialization failure.
CONFLICT_SQLSTATES = ("40P01", "40001")


def store_error(exc: Exception) -> StoreUnavailable:
    """The StoreUnavailable (or StoreConflict) for a transient database error."""
    code = getattr(getattr(exc, "orig", None), "pgcode", None) or getattr(
        getattr(getattr(exc, "orig", None), "diag", None), "sqlstate", None
    )
    return StoreConflict(str(exc)) if code in CONFLICT_SQLSTATES else StoreUnavailable(str(exc))


# Errors of the database connection, not of the data: retrying the same message later can succeed.
TRANSIENT_DB_ERRORS = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError)


# The kinds whose handling locks rows of the device (devices, device_actions): DeviceMessages._lock_devices.
ROW_LOCKING_KINDS = ("presence", "reported", "status")


def lock_order(items: Sequence[tuple[str, bytes]]) -> list[int]:
    """The indexes of a batch's messages sorted by device id, each device's in arrival order (a stable
    sort): every transaction takes row locks in the same order."""
    return sorted(range(len(items)), key=lambda i: items[i][0].split("/", 2)[1:2])


def split_topic(topic: str) -> tuple[str, str] | None:
    """'tf/{id}/{kind}' -> (id, kind) for the kinds a device sends, else None."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != "tf" or not parts[1]:
        return None
    kind = "/".join(parts[2:])
    return (parts[1], kind) if kind in KINDS else None


def encode_chunk(package_id: str, offset: int, package_size: int, data: bytes) -> bytes:
    ident = package_id.encode("ascii")
    return (
        struct.pack("<BB", CHUNK_FORMAT, len(ident)) + ident + struct.pack("<II", offset, package_size) + data
    )


def encode_chunk_error(code: int, reason: str) -> bytes:
    """The reply to a malformed chunk request (PROTOCOL 4.3): `FF`, the error code, an ASCII reason."""
    text = reason.encode("ascii", "replace")[:CHUNK_ERROR_REASON_MAX] or b"?"
    return bytes((CHUNK_ERROR_FORMAT, code)) + text


def decode_chunk_error(buf: bytes) -> tuple[int, str]:
    """Inverse of encode_chunk_error (used by tests and scripted devices)."""
    if len(buf) < 3 or buf[0] != CHUNK_ERROR_FORMAT:
        raise ValueError("not a chunk error")
    return buf[1], buf[2:].decode("ascii")


class BadChunkRequest(Malformed):
    """A chunk request that breaks PROTOCOL 4.3; answered with a chunk error carrying `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def parse_chunk_request(payload: bytes) -> tuple[str, int, int]:
    """(package_id, offset, length) of a well-formed chunk request (PROTOCOL 4.3), else BadChunkRequest
    with BAD_OFFSET for the offset and BAD_MESSAGE for anything else."""
    try:
        req = _json(payload, MAX_JSON_BYTES)
    except Malformed as exc:
        raise BadChunkRequest(ErrorCode.BAD_MESSAGE, str(exc)) from None
    package_id = req.get("package_id")
    if (
        not isinstance(package_id, str)
        or not package_id.isascii()
        or not package_id.isprintable()
        or not 0 < len(package_id) < 256
    ):
        reason = "package_id must be printable ASCII of 1..255 characters"
        raise BadChunkRequest(ErrorCode.BAD_MESSAGE, reason)
    try:
        offset = _int(req, "offset", 0, 0xFFFFFFFF)
    except Malformed as exc:
        raise BadChunkRequest(ErrorCode.BAD_OFFSET, str(exc)) from None
    try:
        length = _int(req, "length", 1, 0xFFFFFFFF)
    except Malformed as exc:
        raise BadChunkRequest(ErrorCode.BAD_MESSAGE, str(exc)) from None
    wrong = check_message("chunk/req", req)  # the schema, after the checks that pick the code
    if wrong is not None:
        raise BadChunkRequest(ErrorCode.BAD_MESSAGE, wrong)
    return package_id, offset, length


def decode_chunk(buf: bytes) -> tuple[str, int, int, bytes]:
    """Inverse of encode_chunk (used by tests and scripted devices)."""
    if len(buf) < 2 or buf[0] != CHUNK_FORMAT:
        raise ValueError("not a format-1 chunk")
    n = buf[1]
    if len(buf) < 2 + n + 8:
        raise ValueError("chunk header truncated")
    ident = buf[2 : 2 + n].decode("ascii")
    offset, size = struct.unpack_from("<II", buf, 2 + n)
    return ident, offset, size, buf[2 + n + 8 :]


def _json(payload: bytes, limit: int) -> dict[str, Any]:
    if len(payload) > limit:
        raise Malformed(f"payload of {len(payload)} bytes is above {limit}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Malformed("payload is not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise Malformed("payload is not a JSON object")
    return obj


def _int(obj: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Malformed(f"{key} must be an integer in {lo}..{hi}")
    return value


def check_reported(obj: dict[str, Any]) -> None:
    _int(obj, "runtime_version", 0, 0xFFFFFFFF)
    _int(obj, "hardware_class", 0, 0xFFFFFFFF)
    if obj.get("phase") not in PHASES:
        raise Malformed(f"phase must be one of {', '.join(PHASES)}")
    if obj.get("active_slot") not in (0, 1, None):
        raise Malformed("active_slot must be 0, 1 or null")
    slots = obj.get("slots", [])
    if not isinstance(slots, list) or len(slots) > 2 or not all(isinstance(s, dict) for s in slots):
        raise Malformed("slots must be a list of at most two objects")
    for s in slots:
        sha = s.get("model_sha256")
        if s.get("valid") and (not isinstance(sha, str) or len(sha) != 64):
            raise Malformed("a valid slot needs a 64-hex-digit model_sha256")


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


def _older_report(new: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """A reported state with a (boot, seq) below the stored one's of the same boot (PROTOCOL 4.2)."""
    if not stored:
        return False
    boot, seq = new.get("boot"), new.get("seq")
    old_boot, old_seq = stored.get("boot"), stored.get("seq")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (boot, seq, old_boot, old_seq)):
        return False
    return bool(boot == old_boot and seq <= old_seq)  # type: ignore[operator]


class DeviceMessages:
    def __init__(
        self,
        db: Engine,
        *,
        default_chunk_size: int,
        cache: PackageCache | None = None,
        stats: GatewayStats | None = None,
        on_change: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        served: ServedBytes | None = None,
    ) -> None:
        self._db = db
        self.served = served or ServedBytes()
        self._chunk = default_chunk_size
        self.cache = cache or PackageCache()
        self.stats = stats or GatewayStats()
        self._on_change = on_change or (lambda: None)
        self._clock = clock
        self._classes: dict[str, int] = {}
        self._limits: dict[int, tuple[int, float]] = {}
        self.chunk_order = ChunkRequestOrder()
        prewarm_validators()  # compile the schemas now, not on the first message

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
                    body = _schema_checked(kind, _json(payload, MAX_JSON_BYTES))
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

    def _dispatch(
        self,
        session: Session,
        device_id: str,
        kind: str,
        body: dict[str, Any] | bytes,
        tally: Counter[tuple[str, str]] | None,
        finished: list[str],
        *,
        careful: bool,
    ) -> list[Outgoing]:
        """A chunk request (raw), or a presence, reported state or status (valid per its schema). Counters
        go to `tally` (None: at once); careful: the device's row is read again under its lock (the fast
        path loaded it so); `finished`: the actions whose download ended (see _count_sent)."""
        if isinstance(body, bytes):
            return self._chunk_request(session, device_id, body)
        obj = body

        def count(key: str) -> None:
            if tally is None:
                self.stats.count("events", key)
            else:
                tally["events", key] += 1

        now = self._clock()
        if kind == "presence":
            device = _device(session, device_id)
            online = obj.get("online")
            if not isinstance(online, bool):
                raise Malformed("presence needs a boolean 'online'")
            # Replicas may handle one device's presence messages out of order (competing consumers, a
            # last will published late): under the row lock, an older one than the stored one is dropped.
            boot, seq = obj.get("boot"), obj.get("seq")
            if careful:
                session.refresh(device, with_for_update=True)
            if devsvc.stale_presence(device, online, boot, seq):
                count("stale_presence")
                return []
            if devsvc.set_presence(session, device, online, now, boot, seq):
                count("came_online")
        elif kind == "reported":
            check_reported(obj)
            device = _device(session, device_id)
            if obj["hardware_class"] != device.hardware_class:
                count("hardware_class_mismatch")
                log.warning(
                    "device %s reports hardware class %s, provisioned as %s",
                    device_id,
                    obj["hardware_class"],
                    device.hardware_class,
                )
            # Replicas may handle one device's reported states out of order (shared subscriptions): the
            # row is locked, and a state older than the stored one (same boot, lower seq) is dropped.
            if careful:
                session.refresh(device, with_for_update=True)
            if _older_report(obj, device.reported):
                count("stale_reported")
                return []
            devsvc.set_reported(session, device, obj, now)
        elif kind == "status":
            try:
                outcome = rsvc.apply_status(session, device_id, obj, now, locked=not careful)
            except ValueError as exc:
                # The device row is read only here: a status needs its action alone (issue 12).
                _device(session, device_id)  # an unknown device is counted as one, not as malformed
                raise Malformed(str(exc)) from None
            if outcome == "stale":
                count("stale_status")
            elif obj["state"] != "downloading":  # bytes_sent is copied once the download is over
                finished.append(obj["action_id"])
        after_commit(session, self._on_change)
        return []

    def _count_sent(self, session: Session, action_ids: list[str]) -> None:
        """The actions' bytes_sent: chunk bytes served for what each was sent (plus a refused delta's);
        read for the whole batch at once, before its own chunk bytes are flushed (they count as pending)."""
        if not action_ids:
            return
        actions = [a for i in dict.fromkeys(action_ids) if (a := session.get(DeviceAction, i)) is not None]
        keys = {a.id: (a.device_id, sent) for a in actions if (sent := a.sent_package_id or a.package_id)}
        totals = self.served.get_many(session, list(keys.values()))
        for action in actions:
            if action.id in keys:
                action.bytes_sent = action.fallback_bytes + totals[keys[action.id]]
                session.add(action)

    def _device_class(self, session: Session, device_id: str) -> int:
        """A device's hardware class (it never changes), cached so that chunks need no database."""
        hw = self._classes.get(device_id)
        if hw is None:
            # The one column, not the row and its JSON columns: with one chunk request per device this
            # is no longer amortised (issue 12).
            hw = session.exec(select(Device.hardware_class).where(col(Device.id) == device_id)).first()
            if hw is None:
                raise UnknownDevice(device_id)
            self._classes[device_id] = hw
        return hw

    def forget_device(self, device_id: str) -> None:
        self._classes.pop(device_id, None)

    def _chunk_limit(self, session: Session, hardware_class: int) -> int:
        now = self._clock()
        cached = self._limits.get(hardware_class)
        if cached is None or now - cached[1] > CHUNK_LIMIT_TTL:
            cached = (registry.chunk_size_for(session, hardware_class, self._chunk), now)
            self._limits[hardware_class] = cached
        return cached[0]

    def _chunk_request(self, session: Session, device_id: str, payload: bytes) -> list[Outgoing]:
        topic = f"tf/{device_id}/chunk"
        arrived = self.chunk_order.take(device_id, payload)
        try:
            package_id, offset, length = parse_chunk_request(payload)
        except BadChunkRequest as exc:
            # Answered, not dropped: the device learns why at once instead of re-asking until it times out.
            self.stats.count("malformed", "chunk/req")
            log.warning("malformed chunk/req from %s: %s", device_id, exc)
            return [Outgoing(topic, encode_chunk_error(exc.code, str(exc)))]
        if self.chunk_order.answered_already(device_id, package_id, offset, arrived):
            self.stats.count("events", "chunk_duplicates_skipped")
            return []
        hardware_class = self._device_class(session, device_id)
        entry = self.cache.lookup(session, package_id)
        if entry is None or entry[1] != hardware_class:
            # An empty chunk says "cannot serve this" so that the device fails fast, not by timeout.
            self.stats.count("events", "chunk_refused")
            return [Outgoing(topic, encode_chunk(package_id, offset, 0, b""))]
        data = entry[0]
        if offset >= len(data):
            self.stats.count("events", "chunk_refused")
            return [Outgoing(topic, encode_chunk(package_id, offset, len(data), b""))]
        piece = data[offset : offset + min(length, self._chunk_limit(session, hardware_class))]
        self.stats.count("events", "chunks_served")
        self.stats.count("events", "chunk_bytes", len(piece))
        self.served.add(device_id, package_id, len(piece))
        self.chunk_order.served(device_id, package_id, offset)
        return [Outgoing(topic, encode_chunk(package_id, offset, len(data), piece))]


def _schema_checked(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """obj, if valid per the kind's schema (docs/schemas, packaged); else Malformed: counted, one log line."""
    wrong = check_message(kind, obj)
    if wrong is not None:
        raise Malformed(f"not valid per its schema: {wrong}")
    return obj


class UnknownDevice(Exception):
    pass


class _Careful(Exception):
    """A message of a fast batch failed after it may have changed something: run the batch carefully."""


# A message's device id, kind and body: the JSON object (valid per its schema), why it is not, or the raw
# payload of a chunk request.
_Decoded = tuple[str, str, "dict[str, Any] | bytes | Malformed"]


def _device(session: Any, device_id: str) -> Device:
    try:
        return devsvc.get_device(session, device_id)
    except NotFound:
        raise UnknownDevice(device_id) from None
