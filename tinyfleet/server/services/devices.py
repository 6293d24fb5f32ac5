"""Devices: provisioning (id, MQTT credentials, trust store), labels, presence and reported state."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

from sqlalchemy import String, cast, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from tinyfleet.server.db import after_commit
from tinyfleet.server.models import Device, DeviceAction, TelemetryReport
from tinyfleet.server.schemas import DeviceCreate, DeviceUpdate
from tinyfleet.server.services.credentials import hash_password, hash_passwords, new_password
from tinyfleet.server.services.effects import Effects
from tinyfleet.server.services.encrypted import new_device_key, new_device_keys
from tinyfleet.server.services.errors import Conflict, NotFound
from tinyfleet.server.services.ids import new_id

PHASES = ("idle", "downloading", "downloaded", "trial")
U32 = 0xFFFFFFFF
# Capability fields a device may report in `capabilities` (docs/PROTOCOL.md 4.2): name -> kind.
CAPABILITY_INTS = ("slot_size", "sector_size", "ram_budget")


class BadCapabilities(ValueError):
    """A reported `capabilities` object that breaks PROTOCOL 4.2 (the message is one line)."""


def _u32(obj: dict[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U32:
        raise BadCapabilities(f"capabilities.{key} must be an integer in 0..{U32}")
    return value


def parse_capabilities(reported: dict[str, Any]) -> dict[str, Any] | None:
    """The capabilities in a reported state, validated, with its hardware class and runtime version; None
    when the device reports none (an older device). BadCapabilities names the bad field."""
    caps = reported.get("capabilities")
    if caps is None:
        return None
    if not isinstance(caps, dict):
        raise BadCapabilities("capabilities must be a JSON object")
    out: dict[str, Any] = {
        "hardware_class": reported.get("hardware_class"),
        "runtime_version": reported.get("runtime_version"),
    }
    for key in CAPABILITY_INTS:
        out[key] = _u32(caps, key)
    if out["slot_size"] is None or out["ram_budget"] is None:
        raise BadCapabilities("capabilities need slot_size and ram_budget")
    ops = caps.get("ops")
    if ops is not None and (
        not isinstance(ops, list)
        or len(ops) > 1024
        or not all(isinstance(o, int) and not isinstance(o, bool) and 0 <= o <= 0xFFFF for o in ops)
    ):
        raise BadCapabilities("capabilities.ops must be a list of builtin operator codes (0..65535)")
    out["ops"] = sorted(set(ops)) if ops is not None else None
    for key in ("engine", "payload_decoder", "encryption", "requires_encryption"):
        value = caps.get(key)
        if value is not None and not isinstance(value, bool):
            raise BadCapabilities(f"capabilities.{key} must be true or false")
        out[key] = value
    return out


def provision(
    session: Session, fx: Effects, body: DeviceCreate, *, with_password: bool = True
) -> tuple[Device, str, str]:
    """Create a device; returns it with its MQTT password and its X25519 private key (base64), both
    shown once: only the password's hash and the public key are kept. Without a password (certificate
    identity, services/device_certs.py) the hash and the password are ""."""
    if body.id is not None and session.get(Device, body.id) is not None:
        raise Conflict(f"device {body.id!r} already exists")
    password = new_password() if with_password else ""
    encryption_key, public_key = new_device_key()
    device = Device(
        id=body.id or new_id("dev", 6),
        name=body.name,
        hardware_class=body.hardware_class,
        group=body.group,
        tags=list(body.tags),
        mqtt_password_hash=hash_password(password) if with_password else "",
        encryption_public_key=public_key,
        created_at=time.time(),
    )
    session.add(device)
    session.flush()
    if with_password:
        after_commit(session, partial(fx.add_password_entry, device.id, device.mqtt_password_hash))
    after_commit(session, fx.wake_rollouts)  # it may join a running rollout
    return device, password, encryption_key


def existing_ids(session: Session, ids: list[str]) -> list[str]:
    """Those of ids that name a device, in the order given (queried in batches under bind limits)."""
    found: set[str] = set()
    for i in range(0, len(ids), 1000):
        found.update(session.exec(select(Device.id).where(col(Device.id).in_(ids[i : i + 1000]))))
    return [d for d in ids if d in found]


def conflict_message(ids: list[str]) -> str:
    shown = ", ".join(ids[:20]) + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
    return f"{len(ids)} device id(s) exist already, nothing was created: {shown}"


def provision_bulk(
    session: Session, fx: Effects, bodies: list[DeviceCreate], *, with_password: bool = True
) -> list[tuple[str, int, str, str]]:
    """Create all the devices or none (an existing id raises Conflict naming them); returns each one's
    id, hardware class, password and X25519 private key (base64). The broker's password file gets one
    append of all after the commit. Without passwords (certificate identity) the passwords are "" and
    the file is left alone."""
    ids = [b.id or new_id("dev", 6) for b in bodies]
    passwords = [new_password() if with_password else "" for _ in bodies]
    # Hashed before the first statement: on SQLite that statement takes the database's write lock
    # (BEGIN IMMEDIATE), which the gateway and rollout driver must not wait on for seconds of PBKDF2.
    hashes = hash_passwords(passwords) if with_password else passwords
    device_keys = new_device_keys(len(bodies))  # also before the write lock (~0.1 ms each)
    taken = existing_ids(session, ids)
    if taken:
        raise Conflict(conflict_message(taken))
    now = time.time()
    rows = [
        {
            "id": device_id,
            "name": b.name,
            "hardware_class": b.hardware_class,
            "group": b.group,
            "tags": list(b.tags),
            "mqtt_password_hash": h,
            "encryption_public_key": k[1],
            "online": False,
            "created_at": now,
        }
        for device_id, b, h, k in zip(ids, bodies, hashes, device_keys, strict=True)
    ]
    try:
        # Core executemany (batched multi-row INSERTs), not ORM units of work: 10x fewer Python objects.
        session.execute(insert(Device), rows)
    except IntegrityError:
        # another client created one of the ids since the check (PostgreSQL; SQLite's write lock is held)
        session.rollback()
        raise Conflict(conflict_message(existing_ids(session, ids) or ids[:1])) from None
    if with_password:
        after_commit(session, partial(fx.add_password_entries, list(zip(ids, hashes, strict=True))))
    after_commit(session, fx.wake_rollouts)
    # (id, hardware class, password, key), not ORM objects: 10,000 Devices cost more than the INSERT
    return [
        (i, b.hardware_class, p, k[0]) for i, b, p, k in zip(ids, bodies, passwords, device_keys, strict=True)
    ]


def rotate_password(session: Session, fx: Effects, device: Device) -> str:
    password = new_password()
    device.mqtt_password_hash = hash_password(password)
    session.add(device)
    session.flush()
    after_commit(session, fx.sync_password_file)
    return password


def get_device(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id!r} not found")
    return device


def list_devices(
    session: Session,
    *,
    group: str | None = None,
    tag: str | None = None,
    hardware_class: int | None = None,
    online: bool | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Device]:
    """One page of devices in id order, filtered and paged by the database."""
    stmt = select(Device).order_by(col(Device.id))
    if group is not None:
        stmt = stmt.where(Device.group == group)
    if hardware_class is not None:
        stmt = stmt.where(Device.hardware_class == hardware_class)
    if online is not None:
        stmt = stmt.where(Device.online == online)
    if tag is not None:
        # Tags are a JSON list of labels, which cannot hold '"' or '\\' (schemas.LABEL_PATTERN): the tag
        # JSON-quoted occurs in the list's text exactly when it is an element (SQLite and PostgreSQL).
        stmt = stmt.where(cast(col(Device.tags), String).contains(json.dumps(tag), autoescape=True))
    return list(session.exec(stmt.offset(offset).limit(limit)))


def update_labels(session: Session, fx: Effects, device: Device, body: DeviceUpdate) -> Device:
    if body.name is not None:
        device.name = body.name
    if body.clear_group:
        device.group = None
    elif body.group is not None:
        device.group = body.group
    if body.tags is not None:
        device.tags = list(body.tags)
    session.add(device)
    session.flush()
    after_commit(session, fx.wake_rollouts)  # it may now match a running rollout's selector
    return device


def actions_of(session: Session, device_id: str) -> list[DeviceAction]:
    """The device's actions in every rollout, oldest first."""
    stmt = select(DeviceAction).where(DeviceAction.device_id == device_id)
    return list(session.exec(stmt.order_by(col(DeviceAction.created_at))))


def delete_device(session: Session, fx: Effects, device: Device) -> None:
    if session.exec(select(DeviceAction).where(DeviceAction.device_id == device.id)).first() is not None:
        raise Conflict(f"device {device.id!r} took part in rollouts; it is kept for their history")
    for row in session.exec(select(TelemetryReport).where(TelemetryReport.device_id == device.id)):
        session.delete(row)
    session.delete(device)
    session.flush()
    after_commit(session, partial(fx.forget_device, device.id))
    after_commit(session, fx.sync_password_file)


RETIRED_BOOTS = 4  # earlier boots remembered per device: late wills of a few quick reboots in a row


def stale_presence(device: Device, online: bool, boot: int | None, seq: int | None) -> bool:
    """Is this presence older than the one the device's `online` comes from (PROTOCOL 4.6 "Presence
    order")? Within one boot, a lower seq (connection) is older; for the same connection `online` comes
    before `offline` (its will or clean shutdown), so an `online` after that connection's `offline` is
    old. Across boots: a boot the server already moved away from (another boot's presence was applied
    after its own) is over, so its `offline` (a late will) is old, and so is its `online` unless from a
    connection newer than the last one applied from it (then that boot is the live one after all: the
    server had taken an older boot's late message for a new boot). An unknown boot, or no (boot, seq) on
    either side: not comparable, the message is applied."""
    if boot is None or seq is None:
        return False
    if boot != device.presence_boot:
        for old_boot, old_seq in device.presence_retired or []:
            if old_boot == boot:
                return not online or seq <= old_seq
        return False
    if device.presence_seq is None:
        return False
    if seq != device.presence_seq:
        return seq < device.presence_seq
    return online and not device.online


def set_presence(
    session: Session,
    device: Device,
    online: bool,
    now: float,
    boot: int | None = None,
    seq: int | None = None,
) -> bool:
    """Returns True when the device just came online (the rollout driver lets it join rollouts). The
    caller has dropped a stale one (stale_presence) under the device's row lock."""
    came_online = online and not device.online
    if boot is not None and boot != device.presence_boot:
        # Another boot takes over: remember the one it replaces (and forget the new one if it was there).
        retired = [pair for pair in device.presence_retired or [] if pair[0] != boot]
        if device.presence_boot is not None and device.presence_seq is not None:
            retired.insert(0, [device.presence_boot, device.presence_seq])
        device.presence_retired = retired[:RETIRED_BOOTS] or None  # a new list: JSON changes are seen
    device.online = online
    device.last_seen = now
    device.presence_boot, device.presence_seq = boot, seq
    session.add(device)
    return came_online


def active_slot(reported: dict[str, Any] | None) -> dict[str, Any] | None:
    if not reported:
        return None
    idx = reported.get("active_slot")
    slots = reported.get("slots") or []
    if isinstance(idx, int) and 0 <= idx < len(slots) and isinstance(slots[idx], dict):
        slot: dict[str, Any] = slots[idx]
        return slot if slot.get("valid") else None
    return None


def other_slot(reported: dict[str, Any] | None) -> dict[str, Any] | None:
    if not reported:
        return None
    idx = reported.get("active_slot")
    slots = reported.get("slots") or []
    if isinstance(idx, int) and idx in (0, 1) and len(slots) == 2 and isinstance(slots[1 - idx], dict):
        slot: dict[str, Any] = slots[1 - idx]
        return slot if slot.get("valid") else None
    return None


def set_reported(session: Session, device: Device, reported: dict[str, Any], now: float) -> None:
    device.reported = reported
    device.reported_at = now
    device.last_seen = now
    rv = reported.get("runtime_version")
    device.runtime_version = rv if isinstance(rv, int) else None
    slot = active_slot(reported)
    sha = slot.get("model_sha256") if slot else None
    device.active_model_sha256 = sha if isinstance(sha, str) else None
    caps = parse_capabilities(reported)
    if caps is not None:  # a report without them keeps what the device said before
        device.capabilities = caps
    session.add(device)


def matches(device: Device, selector: dict[str, Any], hardware_classes: set[int] | None = None) -> bool:
    """Does the device fall under a rollout's selector (and have a package for its hardware class)?"""
    ids = selector.get("device_ids") or []
    if ids and device.id not in ids:
        return False
    hw = selector.get("hardware_class")
    if hw is not None and device.hardware_class != hw:
        return False
    if hardware_classes is not None and device.hardware_class not in hardware_classes:
        return False
    group = selector.get("group")
    if group is not None and device.group != group:
        return False
    tags = selector.get("tags") or []
    have = set(device.tags or [])
    return all(t in have for t in tags)
