"""Rolling a rollout back: every device it touched returns to the model it had, by a revert when the
other slot still holds that model, else by installing the old package (re-signed when the device's
sequence or security floor needs it). A mixin of RolloutDriver (services/rollout_driver.py).
"""

from __future__ import annotations

from sqlmodel import Session

from tinyfleet.server.models import Device, DeviceAction, Rollout
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import packages as pkgsvc
from tinyfleet.server.services import rollouts as rsvc
from tinyfleet.server.services.rollout_payload import Desired, RolloutPayloads
from tinyfleet.server.services.rollouts import TERMINAL
from tinyfleet.signing.codes import ErrorCode


class RolloutRollback(RolloutPayloads):
    def _reinstall(
        self, session: Session, back: DeviceAction, old_id: str, device: Device, now: float
    ) -> None:
        """Roll back by installing the old model: the old package, or a re-signed copy of it with a
        sequence number the device accepts (see packages.rollback_package)."""
        active = devsvc.active_slot(device.reported) or {}
        seq = active.get("sequence")
        floor = (device.reported or {}).get("security_floor")
        try:
            old = pkgsvc.get_package(session, old_id)
            if self.keys is None:
                pkg = old
            else:
                pkg = pkgsvc.rollback_package(
                    session,
                    self.keys,
                    old,
                    seq if isinstance(seq, int) else 0,
                    floor if isinstance(floor, int) else 0,
                )
        except pkgsvc.RollbackImpossible as exc:
            back.state, back.error_code, back.error = "failed", exc.code, exc.message
            return
        back.operation, back.package_id = "install", pkg.id
        if self._assign_payload(session, back, device):
            back.state, back.notified_at = "notified", now
            device.desired = self._desired_install(session, back, device)

    def _roll_back(
        self,
        session: Session,
        rollout: Rollout,
        actions: list[DeviceAction],
        devices: dict[str, Device],
        now: float,
    ) -> list[Desired]:
        """Every device the rollout touched goes back to the model it had: by a revert (no download)
        when its other slot still holds that model, else by installing the old package."""
        publish: list[Desired] = []
        has_rollback = {a.device_id for a in actions if a.purpose == "rollback"}
        for a in [a for a in actions if a.purpose == "deploy"]:
            if a.state in ("queued", "rolled_back") or a.device_id in has_rollback:
                continue
            device = devices.get(a.device_id) or session.get(Device, a.device_id)
            if device is None:
                continue
            prev = a.previous_model_sha256
            if device.active_model_sha256 == prev:
                # Never left the old model (failed, or still downloading): cancel whatever is pending.
                a.state, a.updated_at = "rolled_back", now
                session.add(a)
                if (device.desired or {}).get("action_id") == a.id:
                    device.desired = rsvc.none_desired()
                    session.add(device)
                    publish.append((device.id, device.desired))
                continue
            back = rsvc.new_action(
                rollout, device, purpose="rollback", operation="revert", wave=a.wave, now=now
            )
            back.target_model_sha256 = prev
            other = devsvc.other_slot(device.reported)
            if prev is None:
                # Not a failure: there is nothing to return to (the runtime cannot uninstall a model).
                back.state, back.error_code, back.updated_at = "skipped", ErrorCode.NO_PREVIOUS, now
                back.error = (
                    f"{rsvc.NO_PREVIOUS_MODEL}: the device ran no model before this rollout;"
                    " it keeps the rollout's model"
                )
            elif other is not None and other.get("model_sha256") == prev:
                back.state, back.notified_at = "notified", now
                device.desired = {
                    "action_id": back.id,
                    "operation": "revert",
                    "package_id": None,
                    "package_size": 0,
                    "model_sha256": prev,
                    "chunk_size": 0,
                }
            elif a.previous_package_id is not None:
                self._reinstall(session, back, a.previous_package_id, device, now)
            else:
                back.state, back.error_code = "failed", ErrorCode.NO_PREVIOUS
                back.error = "the old model is neither in the other slot nor stored as a package"
            session.add(back)
            actions.append(back)
            if back.state == "notified":
                session.add(device)
                publish.append((device.id, device.desired or {}))
        for back in actions:
            if back.purpose != "rollback" or back.state != "queued" or back.operation != "install":
                continue
            device = devices.get(back.device_id) or session.get(Device, back.device_id)
            if device is not None and self._assign_payload(session, back, device):
                back.state, back.notified_at, back.updated_at = "notified", now, now
                device.desired = self._desired_install(session, back, device)
                session.add(back)
                session.add(device)
                publish.append((device.id, device.desired))
        pending = [a for a in actions if a.purpose == "rollback" and a.state not in TERMINAL]
        if not pending:
            # Finished: `rolled_back` whatever each device's outcome; the reason and the API's
            # rollback_outcome say how many went back and how many could not (or had nothing to go to).
            name, version = rsvc.version_label(session, rollout.model_version_id)
            summary = rsvc.rollback_summary(rsvc.rollback_outcomes(actions), f"{name} {version}")
            rollout.state, rollout.finished_at = "rolled_back", now
            rollout.state_reason = "; ".join(p for p in (rollout.state_reason, summary) if p)[:500]
        return publish
