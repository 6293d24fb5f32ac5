"""Device search for the console and GET /api/devices: filters, sort and pages done by the database.

Every filter is a plain column comparison or an indexed sub-select (hardware_class and group are indexed
columns, a version goes through packages.model_sha256, "failing" through device_actions.state), so a page
of a 10,000-device fleet costs one filtered, sorted, limited query plus one count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sqlalchemy import String, cast, func, or_
from sqlmodel import Session, col, select

from tinyfleet.server.models import Device, DeviceAction, Model, ModelVersion, Package, Rollout

SortKey = Literal["id", "name", "group", "hardware_class", "last_seen", "created_at"]
SORT_KEYS: tuple[str, ...] = get_args(SortKey)
FAILED_STATES = ("failed", "timed_out")
# A device counts as failing while a rollout that is still in the operator's hands holds a failed action.
OPEN_ROLLOUT_STATES = ("running", "paused", "rolling_back")


@dataclass(frozen=True)
class DeviceFilter:
    q: str | None = None  # substring of the id or the name, any case
    group: str | None = None
    tag: str | None = None
    hardware_class: int | None = None
    model_version_id: int | None = None  # devices whose active model is one of that version's packages
    online: bool | None = None
    failing: bool | None = None


def _like(text: str) -> str:
    return "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def failing_ids() -> Any:
    """Sub-select of the ids of devices with a failed action in an open rollout."""
    return (
        select(DeviceAction.device_id)
        .join(Rollout, col(Rollout.id) == col(DeviceAction.rollout_id))
        .where(col(DeviceAction.state).in_(FAILED_STATES), col(Rollout.state).in_(OPEN_ROLLOUT_STATES))
    )


def failing_count(session: Session) -> int:
    stmt = select(func.count(func.distinct(DeviceAction.device_id))).join(
        Rollout, col(Rollout.id) == col(DeviceAction.rollout_id)
    )
    stmt = stmt.where(col(DeviceAction.state).in_(FAILED_STATES), col(Rollout.state).in_(OPEN_ROLLOUT_STATES))
    return int(session.exec(stmt).one())


def version_digests(model_version_id: int) -> Any:
    return select(Package.model_sha256).where(Package.model_version_id == model_version_id)


def _where(stmt: Any, f: DeviceFilter) -> Any:
    if f.q:
        pattern = _like(f.q)
        stmt = stmt.where(
            or_(
                func.lower(col(Device.id)).like(pattern, escape="\\"),
                func.lower(col(Device.name)).like(pattern, escape="\\"),
            )
        )
    if f.group is not None:
        stmt = stmt.where(Device.group == f.group)
    if f.hardware_class is not None:
        stmt = stmt.where(Device.hardware_class == f.hardware_class)
    if f.online is not None:
        stmt = stmt.where(Device.online == f.online)
    if f.tag is not None:
        # Tags cannot hold '"' or '\\' (schemas.LABEL_PATTERN): the JSON-quoted tag occurs in the list's
        # text exactly when it is an element, on SQLite and PostgreSQL alike.
        stmt = stmt.where(cast(col(Device.tags), String).contains(json.dumps(f.tag), autoescape=True))
    if f.model_version_id is not None:
        stmt = stmt.where(col(Device.active_model_sha256).in_(version_digests(f.model_version_id)))
    if f.failing is not None:
        member = col(Device.id).in_(failing_ids())
        stmt = stmt.where(member if f.failing else ~member)
    return stmt


def search(
    session: Session, f: DeviceFilter, sort: str = "id", limit: int | None = None, offset: int = 0
) -> tuple[list[Device], int]:
    """One page of matching devices and how many match in all. `sort` is a SortKey, '-' first for
    descending; ties (and NULLs, last) are broken by id so that pages never overlap."""
    desc = sort.startswith("-")
    key = sort.removeprefix("-")
    if key not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)} (prefix '-' for descending)")
    column = col(getattr(Device, key))
    order = [column.desc().nulls_last() if desc else column.asc().nulls_last()]
    if key != "id":
        order.append(col(Device.id).asc())
    rows = session.exec(_where(select(Device), f).order_by(*order).offset(offset).limit(limit))
    total = session.exec(_where(select(func.count()).select_from(Device), f)).one()
    return list(rows), int(total)


def version_labels(session: Session) -> dict[str, tuple[int, str]]:
    """Model digest -> (model version id, "model x.y.z") for every package the registry knows."""
    stmt = (
        select(Package.model_sha256, ModelVersion.id, Model.name, ModelVersion.version)
        .join(ModelVersion, col(ModelVersion.id) == col(Package.model_version_id))
        .join(Model, col(Model.id) == col(ModelVersion.model_id))
    )
    return {sha: (int(mv_id or 0), f"{name} {ver}") for sha, mv_id, name, ver in session.exec(stmt)}


def by_active_version(session: Session) -> list[dict[str, Any]]:
    """Devices per active model: [{model_version_id, label, devices, online}], most devices first."""
    # grouped by (digest, online) rather than summing a boolean, which SQLite and PostgreSQL spell apart
    labels = version_labels(session)
    counts: dict[str | None, list[int]] = {}
    for sha, online, n in session.exec(
        select(Device.active_model_sha256, Device.online, func.count()).group_by(
            col(Device.active_model_sha256), col(Device.online)
        )
    ):
        entry = counts.setdefault(sha, [0, 0])
        entry[0] += int(n)
        entry[1] += int(n) if online else 0
    out = []
    for sha, (n, online_n) in counts.items():
        known = labels.get(sha) if sha is not None else None
        mv_id, label = known or (None, "none" if sha is None else "unknown " + sha[:12])
        out.append({"model_version_id": mv_id, "label": label, "devices": n, "online": online_n})
    return sorted(out, key=lambda e: (-e["devices"], e["label"]))


def by_phase(session: Session) -> dict[str, int]:
    """Devices per reported phase (idle, downloading, downloaded, trial; "unknown" before any report)."""
    phase = col(Device.reported)["phase"].as_string()
    out: dict[str, int] = {}
    for value, n in session.exec(select(phase, func.count()).group_by(phase)):
        key = value or "unknown"
        out[key] = out.get(key, 0) + int(n)
    return out


def online_counts(session: Session) -> dict[str, int]:
    rows = dict(session.exec(select(Device.online, func.count()).group_by(col(Device.online))).all())
    return {"online": int(rows.get(True, 0)), "offline": int(rows.get(False, 0))}
