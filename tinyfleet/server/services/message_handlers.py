"""What one presence, reported state, status or chunk request does to the database and which replies it
makes (PROTOCOL section 4), and the state of a replica's handler that outlives a batch (caches, counters).
The batches around them, their locks, fast path and careful path are DeviceMessages' (messages.py)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tinyfleet.server.db import after_commit
from tinyfleet.server.models import Device, DeviceAction
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import registry
from tinyfleet.server.services import rollouts as rsvc
from tinyfleet.server.services.chunk_order import ChunkRequestOrder
from tinyfleet.server.services.device_wire import (
    BadChunkRequest,
    Malformed,
    Outgoing,
    check_reported,
    encode_chunk,
    encode_chunk_error,
    parse_chunk_request,
)
from tinyfleet.server.services.errors import NotFound
from tinyfleet.server.services.gateway_stats import GatewayStats
from tinyfleet.server.services.packages import PackageCache
from tinyfleet.server.services.served import ServedBytes
from tinyfleet.server.services.wire_validation import prewarm as prewarm_validators

log = logging.getLogger(__name__)

CHUNK_LIMIT_TTL = 5.0  # seconds a hardware class's chunk size is cached


def _older_report(new: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """A reported state with a (boot, seq) below the stored one's of the same boot (PROTOCOL 4.2)."""
    if not stored:
        return False
    boot, seq = new.get("boot"), new.get("seq")
    old_boot, old_seq = stored.get("boot"), stored.get("seq")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (boot, seq, old_boot, old_seq)):
        return False
    return bool(boot == old_boot and seq <= old_seq)  # type: ignore[operator]


class MessageHandlers:
    """The handling of each kind of message, for DeviceMessages (its subclass) to run in batches."""

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

    def _device_class(self, session: Session, device_id: str, *, fresh: bool = False) -> int:
        """A device's hardware class, cached so that chunks need no database. A device's class never
        changes, but its id may be deleted and provisioned again in another class (fresh: read again)."""
        hw = None if fresh else self._classes.get(device_id)
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
        if entry is not None and entry[1] != hardware_class:
            # Only the replica that deletes a device forgets its class: the id may have been provisioned
            # again in another class through another replica. Read once more before refusing (refusals
            # are rare: chunks served still read nothing).
            hardware_class = self._device_class(session, device_id, fresh=True)
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


class UnknownDevice(Exception):
    pass


def _device(session: Any, device_id: str) -> Device:
    try:
        return devsvc.get_device(session, device_id)
    except NotFound:
        raise UnknownDevice(device_id) from None
