"""Rollouts: creation, operator commands (start, pause, resume, abort, roll back) and device status.

The state machine that moves a rollout forward lives in services/rollout_driver.py; everything here
only changes rows, so that the driver's next tick (which may run in another process after a restart) sees
the whole truth in the database.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Collection
from functools import partial
from typing import Any, Literal

from sqlmodel import Session, col, select

from tinyfleet.server.canary import gate as canary_gate
from tinyfleet.server.db import after_commit
from tinyfleet.server.models import Device, DeviceAction, ModelVersion, Package, Rollout
from tinyfleet.server.schemas import RolloutCreate
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import encrypted as encsvc
from tinyfleet.server.services import packages as pkgsvc
from tinyfleet.server.services import registry
from tinyfleet.server.services.compatibility import Incompatible, Refusal, predict
from tinyfleet.server.services.effects import Effects
from tinyfleet.server.services.errors import Conflict, Invalid, NotFound
from tinyfleet.server.services.ids import new_id
from tinyfleet.server.services.signer import ServerKeys
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.manifest import ENCODING_NAMES

IN_FLIGHT = ("notified", "downloading", "verifying", "trial")
# "skipped" is for a rollback action only: the device ran no model before the rollout, nothing to return to.
TERMINAL = ("confirmed", "failed", "rolled_back", "timed_out", "skipped")
FAILED = ("failed", "timed_out", "rolled_back")
IN_BATCH = 5000  # ids per SQL IN list (SQLite allows 32,766 parameters)
ACTIVE_ROLLOUT_STATES = ("running", "paused", "rolling_back")
DEVICE_REPORTED_STATES = ("downloading", "verifying", "trial", "confirmed", "failed", "rolled_back")
Command = Literal["start", "pause", "resume", "abort", "rollback"]


def create(
    session: Session, fx: Effects, body: RolloutCreate, default_timeout: float, keys: ServerKeys | None = None
) -> Rollout:
    """A draft rollout, started at once when `body.start`. An encrypted one needs the server's signing
    `keys` (its packages are re-signed encrypted)."""
    registry.get_version(session, body.model_version_id)
    packages = registry.packages_of_version(session, body.model_version_id)
    if not packages:
        raise Invalid(f"model version {body.model_version_id} has no package to roll out")
    if body.encrypted:
        encsvc.check_signable(packages, keys)
        encsvc.check_model_ram(session, packages)
    rollout = Rollout(
        name=body.name,
        model_version_id=body.model_version_id,
        selector=body.selector.model_dump(),
        waves=[w.model_dump(exclude_none=True) for w in body.waves],
        success_threshold_percent=body.success_threshold_percent,
        soak_seconds=body.soak_seconds,
        failure_threshold=body.failure_threshold.model_dump(exclude_none=True),
        failure_action=body.failure_action,
        max_concurrent=body.max_concurrent,
        action_timeout_seconds=body.action_timeout_seconds or default_timeout,
        canary=body.canary.model_dump() if body.canary is not None else None,
        encrypted=body.encrypted,
        state="draft",
        created_at=time.time(),
    )
    session.add(rollout)
    session.flush()
    if body.start:
        return start(session, fx, rollout, skip_incompatible=body.skip_incompatible)
    # A draft is checked against every matching device, online or not; start checks again.
    targets = eligible_devices(session, rollout, online_only=False)
    _leave_out_incompatible(session, rollout, targets, body.skip_incompatible)
    return rollout


def command(
    session: Session, fx: Effects, rollout: Rollout, name: Command, *, skip_incompatible: bool = False
) -> Rollout:
    """An operator command by name (POST /rollouts/{id}/{command}); skip_incompatible is for start."""
    if name == "start":
        return start(session, fx, rollout, skip_incompatible=skip_incompatible)
    if name == "pause":
        return pause(session, fx, rollout)
    if name == "resume":
        return resume(session, fx, rollout)
    if name == "abort":
        return abort(session, fx, rollout)
    return request_rollback(session, fx, rollout)


def get_rollout(session: Session, rollout_id: int) -> Rollout:
    rollout = session.get(Rollout, rollout_id)
    if rollout is None:
        raise NotFound(f"rollout {rollout_id} not found")
    return rollout


def list_rollouts(session: Session, state: str | None = None) -> list[Rollout]:
    stmt = select(Rollout).order_by(col(Rollout.id).desc())
    if state is not None:
        stmt = stmt.where(Rollout.state == state)
    return list(session.exec(stmt))


def actions_of(
    session: Session, rollout_id: int, purpose: str | None = None, state: str | None = None
) -> list[DeviceAction]:
    stmt = select(DeviceAction).where(DeviceAction.rollout_id == rollout_id)
    if purpose is not None:
        stmt = stmt.where(DeviceAction.purpose == purpose)
    if state is not None:
        stmt = stmt.where(DeviceAction.state == state)
    return list(session.exec(stmt.order_by(col(DeviceAction.wave), col(DeviceAction.device_id))))


def busy_device_ids(session: Session, except_rollout: int | None) -> set[str]:
    """Devices already in another active rollout: a device follows one rollout at a time."""
    stmt = (
        select(DeviceAction.device_id)
        .join(Rollout, col(DeviceAction.rollout_id) == col(Rollout.id))
        .where(col(Rollout.state).in_(ACTIVE_ROLLOUT_STATES))
    )
    if except_rollout is not None:
        stmt = stmt.where(Rollout.id != except_rollout)
    return set(session.exec(stmt))


def package_classes(session: Session, model_version_id: int) -> set[int]:
    return {p.hardware_class for p in registry.packages_of_version(session, model_version_id)}


def eligible_devices(
    session: Session, rollout: Rollout, *, online_only: bool, exclude: Collection[str] = ()
) -> list[Device]:
    """Devices the rollout may target, in id order, leaving out `exclude` (already targeted)."""
    classes = package_classes(session, rollout.model_version_id)
    busy = busy_device_ids(session, rollout.id) | set(exclude)
    busy |= {d["device_id"] for d in rollout.skipped_devices or []}  # they would refuse the package
    # Ids first, whole rows only for the rest: the rollout driver asks every tick, and parsing 10,000
    # devices' JSON columns to find none new was most of a big rollout's server CPU.
    ids = select(Device.id).where(col(Device.hardware_class).in_(classes))
    if online_only:
        ids = ids.where(Device.online == True)  # noqa: E712 (SQL expression)
    group = rollout.selector.get("group")
    if group is not None:
        ids = ids.where(Device.group == group)
    wanted = [i for i in session.exec(ids) if i not in busy]
    found: list[Device] = []
    for start in range(0, len(wanted), IN_BATCH):
        stmt = select(Device).where(col(Device.id).in_(wanted[start : start + IN_BATCH]))
        found += [d for d in session.exec(stmt) if devsvc.matches(d, rollout.selector, classes)]
    return sorted(found, key=lambda d: d.id)


def wave_sizes(waves: list[dict[str, Any]], total: int) -> list[int]:
    """Each wave takes its count or ceil(percent of total); the last wave takes whatever is left."""
    sizes: list[int] = []
    left = total
    for wave in waves:
        want = wave["count"] if wave.get("count") is not None else math.ceil(wave["percent"] * total / 100)
        take = min(int(want), left)
        sizes.append(take)
        left -= take
    sizes[-1] += left
    return sizes


def new_action(
    rollout: Rollout, device: Device, *, purpose: str, operation: str, wave: int, now: float
) -> DeviceAction:
    return DeviceAction(
        id=new_id("act", 8),
        rollout_id=rollout.id or 0,
        device_id=device.id,
        purpose=purpose,
        operation=operation,
        wave=wave,
        state="queued",
        created_at=now,
        updated_at=now,
    )


def refusals(session: Session, rollout: Rollout, devices: list[Device]) -> list[Refusal]:
    """What each device would refuse the rollout's package with (devices with unknown capabilities and
    those that would accept it are not listed)."""
    cache: dict[str, Any] = {}
    out = []
    packages = _packages_by_class(session, rollout)
    for device in devices:
        pkg = packages(device.hardware_class)
        refusal = predict(session, device, pkg, cache, encrypted=rollout.encrypted) if pkg else None
        if refusal is not None:
            out.append(refusal)
    return out


def _packages_by_class(session: Session, rollout: Rollout) -> Callable[[int], Package | None]:
    """The rollout's package for a hardware class, looked up once per class (not once per device)."""
    found: dict[int, Package | None] = {}

    def lookup(hardware_class: int) -> Package | None:
        if hardware_class not in found:
            found[hardware_class] = pkgsvc.package_for(session, rollout.model_version_id, hardware_class)
        return found[hardware_class]

    return lookup


def _leave_out_incompatible(
    session: Session, rollout: Rollout, targets: list[Device], skip: bool
) -> list[Device]:
    """`targets` without the devices that would refuse the package, recorded in the rollout when `skip`
    (or when the rollout was created with skip_incompatible); else Incompatible (409) listing them."""
    found = refusals(session, rollout, targets)
    skip = skip or rollout.skipped_devices is not None
    if found and (not skip or len(found) == len(targets)):
        first = found[0]
        hint = "" if skip else "; pass skip_incompatible to leave them out"
        raise Incompatible(
            f"{len(found)} of {len(targets)} targeted device(s) would refuse the package"
            f" (e.g. {first.device_id}: {first.code.name}: {first.reason}){hint}",
            found,
        )
    if skip:
        known = {d["device_id"]: d for d in rollout.skipped_devices or []}
        known.update({r.device_id: r.public() for r in found})
        rollout.skipped_devices = [known[k] for k in sorted(known)]
        session.add(rollout)
    left_out = {r.device_id for r in found}
    return [d for d in targets if d.id not in left_out]


def start(
    session: Session,
    fx: Effects,
    rollout: Rollout,
    now: float | None = None,
    *,
    skip_incompatible: bool = False,
) -> Rollout:
    now = time.time() if now is None else now
    if rollout.state != "draft":
        raise Conflict(f"rollout {rollout.id} is {rollout.state}; only a draft can be started")
    if rollout.encrypted:  # its hardware class may have declared a model RAM since the draft was made
        encsvc.check_model_ram(session, registry.packages_of_version(session, rollout.model_version_id))
    targets = eligible_devices(session, rollout, online_only=True)
    if not targets:
        raise Conflict(
            "no online device matches the selector and has a package for its hardware class"
            " (devices in another active rollout are skipped)"
        )
    targets = _leave_out_incompatible(session, rollout, targets, skip_incompatible)
    order = sorted(targets, key=lambda d: d.id)
    random.Random(rollout.id).shuffle(order)  # canaries spread over the fleet, yet reproducible
    sizes = wave_sizes(rollout.waves, len(order))
    index = 0
    packages = _packages_by_class(session, rollout)
    for wave, size in enumerate(sizes):
        for device in order[index : index + size]:
            action = new_action(rollout, device, purpose="deploy", operation="install", wave=wave, now=now)
            pkg = packages(device.hardware_class)
            action.package_id = pkg.id if pkg else None
            action.target_model_sha256 = pkg.model_sha256 if pkg else None
            session.add(action)
        index += size
    rollout.wave_sizes = sizes
    rollout.state = "running"
    rollout.state_reason = ""
    rollout.current_wave = 0
    rollout.wave_passed_at = None
    rollout.started_at = now
    session.add(rollout)
    session.flush()
    after_commit(session, partial(fx.prepare_rollout, rollout.id or 0))
    after_commit(session, fx.wake_rollouts)
    return rollout


def pause(session: Session, fx: Effects, rollout: Rollout, reason: str = "paused by the operator") -> Rollout:
    if rollout.state != "running":
        raise Conflict(f"rollout {rollout.id} is {rollout.state}; only a running rollout can be paused")
    rollout.state, rollout.state_reason = "paused", reason
    session.add(rollout)
    session.flush()
    after_commit(session, fx.wake_rollouts)
    return rollout


def resume(session: Session, fx: Effects, rollout: Rollout, now: float | None = None) -> Rollout:
    if rollout.state != "paused":
        raise Conflict(f"rollout {rollout.id} is {rollout.state}; only a paused rollout can be resumed")
    deploys = actions_of(session, rollout.id or 0, "deploy")
    rollout.failure_baseline = sum(1 for a in deploys if a.state in FAILED)
    wave = [a for a in deploys if a.wave == rollout.current_wave]
    if wave and all(a.state in TERMINAL for a in wave) and rollout.wave_passed_at is None:
        rollout.wave_passed_at = (
            time.time() if now is None else now
        )  # resuming accepts a wave that ended below its threshold
    canary_gate.accept(session, rollout)  # resuming past a failed or held gate accepts the wave
    rollout.state, rollout.state_reason = "running", ""
    session.add(rollout)
    session.flush()
    after_commit(session, fx.wake_rollouts)
    return rollout


def abort(session: Session, fx: Effects, rollout: Rollout, now: float | None = None) -> Rollout:
    """Stop for good. Devices told about the rollout but not yet started are told to do nothing;
    those already installing finish (interrupting a trial would be worse)."""
    now = time.time() if now is None else now
    if rollout.state not in ("draft", "running", "paused"):
        raise Conflict(f"rollout {rollout.id} is {rollout.state}; it cannot be aborted")
    for action in actions_of(session, rollout.id or 0, "deploy"):
        if action.state == "notified":
            action.state, action.error, action.updated_at = "failed", "rollout aborted", now
            session.add(action)
            device = session.get(Device, action.device_id)
            if device is not None and (device.desired or {}).get("action_id") == action.id:
                device.desired = none_desired()
                session.add(device)
                after_commit(session, partial(fx.publish_desired, device.id, device.desired))
    rollout.state, rollout.state_reason, rollout.finished_at = "aborted", "aborted by the operator", now
    session.add(rollout)
    session.flush()
    after_commit(session, fx.wake_rollouts)
    return rollout


def request_rollback(
    session: Session, fx: Effects, rollout: Rollout, reason: str = "rollback asked by the operator"
) -> Rollout:
    """Send every device the rollout changed back to the model it ran before (the driver does it).

    Refused (409, nothing changes) when the rollout has finished and there is nothing to return to: no
    device it changed ran a model before it (the runtime cannot uninstall a model), or when one of its
    devices now follows another active rollout."""
    if rollout.state not in ("running", "paused", "completed", "aborted"):
        raise Conflict(f"rollout {rollout.id} is {rollout.state}; it cannot be rolled back")
    deploys = actions_of(session, rollout.id or 0, "deploy")
    if rollout.state in ("completed", "aborted"):
        busy = sorted({a.device_id for a in deploys} & busy_device_ids(session, rollout.id))
        if busy:
            raise Conflict(
                f"rollout {rollout.id}: {len(busy)} of its device(s) are in another active rollout"
                f" (e.g. {busy[0]}); finish or abort that one first"
            )
        changed = [a for a in deploys if a.state not in ("queued", "failed", "rolled_back")]
        if changed and all(a.previous_model_sha256 is None for a in changed):
            name, version = version_label(session, rollout.model_version_id)
            raise Conflict(
                f"rollout {rollout.id}: nothing to roll back to: none of its {len(changed)} device(s) ran a"
                f" model before it ({NO_PREVIOUS_MODEL}); they stay on {name} {version}"
            )
    rollout.state, rollout.state_reason = "rolling_back", reason
    rollout.finished_at = None
    session.add(rollout)
    session.flush()
    after_commit(session, fx.wake_rollouts)
    return rollout


# Per-device outcome of a rollback (GET /rollouts/{id}: `rollback_outcome`; actions: `outcome`).
NO_PREVIOUS_MODEL = "no_previous_model"
ROLLBACK_OUTCOMES = ("reverted", "reinstalled", "unchanged", NO_PREVIOUS_MODEL, "failed", "pending")


def rollback_outcome(action: DeviceAction) -> str | None:
    """What a rollback action did to its device: reverted (back on the old model by switching slots, no
    download), reinstalled (the old model installed again), no_previous_model (the device ran no model
    before the rollout and keeps the rollout's one: the runtime cannot uninstall), failed, or pending.
    None for a deploy action."""
    if action.purpose != "rollback":
        return None
    if action.state == "confirmed":
        return "reverted" if action.operation == "revert" else "reinstalled"
    if action.state == "skipped":
        return NO_PREVIOUS_MODEL
    if action.state in TERMINAL:
        return "failed"
    return "pending"


def rollback_outcomes(actions: list[DeviceAction]) -> dict[str, int]:
    """Devices per rollback outcome: each rollback action's, plus `unchanged` for each device the rollout
    touched that never left its old model (it failed, or was cancelled before installing: its deploy is
    rolled_back without a rollback action). Devices still queued were never touched and are not counted."""
    backs = [a for a in actions if a.purpose == "rollback"]
    undone = {a.device_id for a in backs}
    out: dict[str, int] = {}
    for a in backs:
        outcome = rollback_outcome(a) or "pending"
        out[outcome] = out.get(outcome, 0) + 1
    unchanged = sum(
        1 for a in actions if a.purpose == "deploy" and a.state == "rolled_back" and a.device_id not in undone
    )
    if unchanged:
        out["unchanged"] = unchanged
    return out


def rollback_summary(outcomes: dict[str, int], model: str) -> str:
    """The state_reason suffix of a finished rollback, e.g. "rollback finished: 2 device(s) reverted,
    1 device(s) had no previous model (left on hello 1.1.0)"."""
    words = {
        "reverted": "reverted",
        "reinstalled": "reinstalled",
        "unchanged": "never left the old model",
        NO_PREVIOUS_MODEL: f"had no previous model (left on {model})",
        "failed": "could not be rolled back",
    }
    parts = [f"{outcomes[k]} device(s) {words[k]}" for k in words if outcomes.get(k)]
    return "rollback finished: " + (", ".join(parts) if parts else "no device to roll back")


def none_desired() -> dict[str, Any]:
    return {
        "action_id": None,
        "operation": "none",
        "package_id": None,
        "package_size": 0,
        "model_sha256": None,
        "chunk_size": 0,
    }


def apply_status(
    session: Session, device_id: str, msg: dict[str, Any], now: float, *, locked: bool = False
) -> str:
    """Record a device's action status (PROTOCOL 4.4). Returns what happened, for the gateway's counters:
    "applied", "stale" (action already finished), or raises ValueError for a malformed/foreign status.
    `locked`: the caller loaded the action with a row lock in this transaction (a gateway batch does, for
    all its statuses in one query), so the session's copy is current."""
    action_id = msg.get("action_id")
    state = msg.get("state")
    if not isinstance(action_id, str) or state not in DEVICE_REPORTED_STATES:
        raise ValueError("status needs a string action_id and a known state")
    code = msg.get("error_code", ErrorCode.OK)
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code <= 255:
        raise ValueError("error_code must be an integer in 0..255")
    # Locked and read afresh: another replica may be applying a later status of the same action, and a
    # status read before its commit must not overwrite a final state.
    if locked:
        action = session.get(DeviceAction, action_id)
    else:
        action = session.get(DeviceAction, action_id, with_for_update=True, populate_existing=True)
    if action is None or action.device_id != device_id:
        raise ValueError(f"unknown action {action_id!r} for this device")
    if action.state in TERMINAL:
        return "stale"
    if action.operation == "revert" and state == "rolled_back":
        state = "confirmed"  # for a revert, being back on the old model is the goal
    action.state = state
    action.updated_at = now
    if state in ("failed", "rolled_back"):
        action.error_code = code
        error = msg.get("error")
        action.error = (error if isinstance(error, str) else "")[:500]
    received = msg.get("bytes_received", msg.get("offset"))
    if isinstance(received, int) and not isinstance(received, bool) and received >= 0:
        action.bytes_received = received
    session.add(action)
    return "applied"


def counts(actions: list[DeviceAction]) -> dict[str, Any]:
    by_state: dict[str, int] = {}
    for a in actions:
        by_state[a.state] = by_state.get(a.state, 0) + 1
    return {"total": len(actions), "by_state": by_state}


def transfer(actions: list[DeviceAction]) -> dict[str, Any]:
    """Bytes sent per wave and in all, against the raw packages' sizes, for the actions that were sent
    something (a revert downloads nothing)."""
    sent = [a for a in actions if a.sent_package_id is not None]
    waves: dict[int, dict[str, int]] = {}
    encodings: dict[str, int] = {}
    for a in sent:
        w = waves.setdefault(a.wave, {"wave": a.wave, "actions": 0, "bytes_sent": 0, "raw_bytes": 0})
        w["actions"] += 1
        w["bytes_sent"] += a.bytes_sent
        w["raw_bytes"] += a.raw_size
        name = ENCODING_NAMES.get(a.payload_encoding or 0, "?")
        encodings[name] = encodings.get(name, 0) + 1
    return {
        "bytes_sent": sum(a.bytes_sent for a in sent),
        "raw_bytes": sum(a.raw_size for a in sent),
        "encodings": encodings,
        "waves": [waves[k] for k in sorted(waves)],
    }


def version_label(session: Session, model_version_id: int) -> tuple[str, str]:
    mv = session.get(ModelVersion, model_version_id)
    if mv is None:
        return "?", "?"
    model = registry.get_model(session, mv.model_id)
    return model.name, mv.version
