"""Which of a running rollout's actions a driver tick must load as rows, and light copies of the rest.

Loading every action (and its device) as an ORM row on every tick made a 10,000-device rollout's ticks
cost seconds of the server's single interpreter lock, taken from the gateway that feeds the devices.
Most actions need only to be counted (waves, failure threshold, who is in flight); the few that a tick
may change are loaded whole: queued ones it may dispatch, in-flight ones that are due to time out or
whose device already reports the goal (reconciliation), refused variants to resend raw. The tick's
functions read both kinds alike and change only loaded rows (see RolloutDriver._tick_rollout).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from tinyfleet.server.models import Device, DeviceAction, Rollout
from tinyfleet.server.services.rollouts import IN_BATCH, IN_FLIGHT
from tinyfleet.signing.codes import ErrorCode

# Refusals of a variant payload after which the device gets the raw package instead.
RAW_FALLBACK_CODES = frozenset({ErrorCode.WRONG_BASE, ErrorCode.DELTA_CORRUPT})


class ActionCopy(NamedTuple):
    """The columns of an action a tick reads without changing it (a tuple: cheap to make by thousands)."""

    id: str
    device_id: str
    purpose: str
    operation: str
    state: str
    wave: int
    updated_at: float
    error_code: int
    package_id: str | None
    sent_package_id: str | None


class _ActionFacts(Protocol):
    """What the two predicates below read: a DeviceAction row and an ActionCopy both have it."""

    @property
    def state(self) -> str: ...
    @property
    def operation(self) -> str: ...
    @property
    def updated_at(self) -> float: ...
    @property
    def error_code(self) -> int | None: ...
    @property
    def package_id(self) -> str | None: ...
    @property
    def sent_package_id(self) -> str | None: ...


def overdue(a: _ActionFacts, rollout: Rollout, now: float, since: float) -> bool:
    """In flight without progress for the rollout's action timeout, counted from the later of its last
    change and `since` (the end of the last outage)."""
    return a.state in IN_FLIGHT and now - max(a.updated_at, since) > rollout.action_timeout_seconds


def wants_raw_retry(a: _ActionFacts) -> bool:
    """A failed install whose delta or compressed variant the device refused (WRONG_BASE, DELTA_CORRUPT):
    the raw package is sent in the same action."""
    return (
        a.state == "failed"
        and a.operation == "install"
        and a.error_code in RAW_FALLBACK_CODES
        and bool(a.package_id)
        and a.sent_package_id not in (None, a.package_id)  # a variant was sent, not the package
    )


def _needs_row(a: ActionCopy, rollout: Rollout, now: float, since: float) -> bool:
    return a.state != "queued" and (overdue(a, rollout, now, since) or wants_raw_retry(a))


def scan(
    session: Session, rollout: Rollout, now: float, since: float, window: int | None = None
) -> list[DeviceAction] | None:
    """The rollout's actions in actions_of order, rows where a tick may change them and copies
    elsewhere; None when the tick needs every row (not running, a canary gate, or a rollback).

    Of the queued actions only as many as may start now are rows: the first ones (dispatch order) of
    online devices, up to `max_concurrent` and `window` (at most this many in flight after the tick's
    dispatch) minus those in flight. Loading every queued action and its device each tick cost most of a
    10,000-device rollout's driver time while the window let a few hundred start (issue 12)."""
    if rollout.state != "running" or rollout.canary:
        return None
    rid = rollout.id or 0
    table = DeviceAction.__table__.c  # type: ignore[attr-defined]  # SQLModel hides the Table
    stmt = (
        sa.select(
            table.id,
            table.device_id,
            table.purpose,
            table.operation,
            table.state,
            table.wave,
            table.updated_at,
            table.error_code,
            table.package_id,
            table.sent_package_id,
        )
        .where(table.rollout_id == rid)
        .order_by(table.wave, table.device_id)
    )
    copies = [ActionCopy._make(r) for r in session.connection().execute(stmt)]
    if any(a.purpose != "deploy" for a in copies):
        return None
    in_flight = sum(1 for a in copies if a.state in IN_FLIGHT)
    room = min(rollout.max_concurrent, window if window is not None else rollout.max_concurrent) - in_flight
    wanted = {a.id for a in copies if _needs_row(a, rollout, now, since)}
    if room > 0 and any(a.state == "queued" for a in copies):
        startable = (
            select(DeviceAction.id)
            .join(Device, col(Device.id) == col(DeviceAction.device_id))
            .where(
                DeviceAction.rollout_id == rid,
                DeviceAction.state == "queued",
                DeviceAction.wave <= rollout.current_wave,
                col(Device.online).is_(True),
            )
            .order_by(col(DeviceAction.wave), col(DeviceAction.device_id))
            .limit(room)
        )
        wanted.update(session.exec(startable))
    # Reconciliation: in flight, but the device already reports the action's model as active.
    done = (
        select(DeviceAction.id)
        .join(Device, col(Device.id) == col(DeviceAction.device_id))
        .where(
            DeviceAction.rollout_id == rid,
            col(DeviceAction.state).in_(IN_FLIGHT),
            col(Device.active_model_sha256) == col(DeviceAction.target_model_sha256),
        )
    )
    wanted.update(session.exec(done))
    ids = sorted(wanted)
    rows: dict[str, DeviceAction] = {}
    for start in range(0, len(ids), IN_BATCH):
        part = select(DeviceAction).where(col(DeviceAction.id).in_(ids[start : start + IN_BATCH]))
        rows.update((a.id, a) for a in session.exec(part))
    # The copies stand in for rows the tick only reads (same attribute names, never written).
    return [rows.get(a.id) or cast(DeviceAction, a) for a in copies]
