"""Devices: provisioning (id, MQTT credentials, trust store), labels, presence and reported state."""

from __future__ import annotations

import time
from typing import Any

from sqlmodel import Session, col, select

from tinyfleet.server.models import Device
from tinyfleet.server.services.credentials import hash_password, new_password
from tinyfleet.server.services.errors import Conflict, NotFound
from tinyfleet.server.services.ids import new_id

PHASES = ("idle", "downloading", "downloaded", "trial")


def provision(
    session: Session,
    *,
    device_id: str | None,
    name: str,
    hardware_class: int,
    group: str | None,
    tags: list[str],
) -> tuple[Device, str]:
    """Create a device; returns it with its MQTT password (shown once, only the hash is kept)."""
    if device_id is not None and session.get(Device, device_id) is not None:
        raise Conflict(f"device {device_id!r} already exists")
    password = new_password()
    device = Device(
        id=device_id or new_id("dev", 6),
        name=name,
        hardware_class=hardware_class,
        group=group,
        tags=list(tags),
        mqtt_password_hash=hash_password(password),
        created_at=time.time(),
    )
    session.add(device)
    session.flush()
    return device, password


def rotate_password(session: Session, device: Device) -> str:
    password = new_password()
    device.mqtt_password_hash = hash_password(password)
    session.add(device)
    session.flush()
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
) -> list[Device]:
    stmt = select(Device).order_by(col(Device.id))
    if group is not None:
        stmt = stmt.where(Device.group == group)
    if hardware_class is not None:
        stmt = stmt.where(Device.hardware_class == hardware_class)
    if online is not None:
        stmt = stmt.where(Device.online == online)
    devices = list(session.exec(stmt))
    if tag is not None:
        devices = [d for d in devices if tag in (d.tags or [])]
    return devices


def update_labels(
    session: Session,
    device: Device,
    *,
    name: str | None,
    group: str | None,
    clear_group: bool,
    tags: list[str] | None,
) -> Device:
    if name is not None:
        device.name = name
    if clear_group:
        device.group = None
    elif group is not None:
        device.group = group
    if tags is not None:
        device.tags = list(tags)
    session.add(device)
    session.flush()
    return device


def delete_device(session: Session, device: Device) -> None:
    from tinyfleet.server.models import DeviceAction, TelemetryReport

    if session.exec(select(DeviceAction).where(DeviceAction.device_id == device.id)).first() is not None:
        raise Conflict(f"device {device.id!r} took part in rollouts; it is kept for their history")
    for row in session.exec(select(TelemetryReport).where(TelemetryReport.device_id == device.id)):
        session.delete(row)
    session.delete(device)
    session.flush()


def set_presence(session: Session, device: Device, online: bool, now: float) -> bool:
    """Returns True when the device just came online (the rollout engine lets it join rollouts)."""
    came_online = online and not device.online
    device.online = online
    device.last_seen = now
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
