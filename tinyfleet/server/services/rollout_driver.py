"""The rollout driver: a periodic, idempotent tick over the database.

Each tick re-derives what to do from rows only (rollouts, device actions, devices' reported state), so
that a restarted server simply carries on, and a tick that is interrupted half-way is redone whole by
the next one (each rollout is handled in its own transaction). Desired-state messages are published
after the commit (`db.after_commit`); the gateway republishes every device's retained desired state
when it (re)connects, which covers a crash between the commit and the publish.

What each device is sent is chosen in services/rollout_payload.py, rollbacks are in
services/rollout_rollback.py (mixins of RolloutDriver); which actions a tick loads whole is
services/rollout_scan.py, how many devices download at once services/rollout_pacing.py.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select

from tinyfleet.server.canary import gate as canary_gate
from tinyfleet.server.db import after_commit, session_scope
from tinyfleet.server.models import Device, DeviceAction, Rollout
from tinyfleet.server.services import compatibility as compat
from tinyfleet.server.services import packages as pkgsvc
from tinyfleet.server.services import rollout_scan
from tinyfleet.server.services import rollouts as rsvc
from tinyfleet.server.services import variants as varsvc
from tinyfleet.server.services.rollout_pacing import DownloadWindow
from tinyfleet.server.services.rollout_payload import Desired
from tinyfleet.server.services.rollout_rollback import RolloutRollback
from tinyfleet.server.services.rollout_scan import overdue
from tinyfleet.server.services.rollouts import FAILED, IN_FLIGHT, TERMINAL
from tinyfleet.server.services.served import ServedBytes
from tinyfleet.server.services.signer import ServerKeys

log = logging.getLogger(__name__)

MIN_TICK_GAP = 0.05
MAX_TICK_GAP = 2.0


def _attr(column: Any) -> Any:
    """A model's column as the ORM attribute it is at run time (SQLModel types it as its value)."""
    return column


class DesiredPublisher(Protocol):
    def publish_desired(self, device_id: str, desired: dict[str, Any]) -> None: ...


class RolloutDriver(RolloutRollback):
    def __init__(
        self,
        db: Engine,
        *,
        default_chunk_size: int,
        publisher: DesiredPublisher | None = None,
        keys: ServerKeys | None = None,
        tick_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._chunk = default_chunk_size
        self.publisher = publisher
        self.keys = keys  # lets a rollback re-sign an old model with a fresh sequence number
        # Smaller payloads per device (services/variants.py); None sends every package as stored.
        self.variants: varsvc.VariantBuilder | None = None
        self.served = ServedBytes()
        self._tick_seconds = tick_seconds
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self.ticks = 0
        self.last_error: str | None = None
        # Last time device messages may have been held back (server start, database or broker down):
        # action timeouts count from here, see _time_out.
        self._unhealthy_at = 0.0
        self.window = DownloadWindow()
        # Answers shared by many devices within one rollout's tick (payload choice, previous package).
        self._memo: dict[tuple[str, str | None, str | int | None], Any] = {}
        self._encrypted = False  # the ticked rollout sends encrypted packages (services/encrypted.py)
        # With several replicas: whether this one is still the leader, asked inside each rollout's
        # transaction (services/leadership.py); a replica that lost the lock writes nothing.
        self.fence: Callable[[Session], bool] | None = None

    # --- background loop ------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._unhealthy_at = self._clock()  # messages sent while the server was down arrive after this
        self._thread = threading.Thread(target=self._loop, name="tinyfleet-rollouts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wake(self) -> None:
        """Ask for a tick now (a device status arrived); ticks stay serialised."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.tick()
            except Exception as exc:  # a bad row must not stop the driver; it is logged and retried
                self._unhealthy_at = self._clock()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("rollout tick failed")
            # A burst of device messages wakes the driver many times; a pause between ticks lets the
            # gateway's writes through and batches the burst into the next tick. Longer after a long
            # tick: a big rollout's ticks must not take the gateway's share of the (GIL-bound) CPU.
            took = time.monotonic() - began
            self._stop.wait(max(min(MIN_TICK_GAP, self._tick_seconds), min(3 * took, MAX_TICK_GAP)))
            self._wake.wait(self._tick_seconds)
            self._wake.clear()

    # --- one tick -------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> None:
        with self._tick_lock:
            now = self._clock() if now is None else now
            with Session(self._db) as session:
                ids = list(
                    session.exec(
                        select(Rollout.id).where(
                            col(Rollout.state).in_(("running", "paused", "rolling_back"))
                        )
                    )
                )
            for rollout_id in ids:
                try:
                    with session_scope(self._db) as session:
                        if self.fence is not None and not self.fence(session):
                            break  # not the leader (any more): another replica drives the rollouts
                        rollout = session.get(Rollout, rollout_id)
                        if rollout is not None:
                            publish = self._tick_rollout(session, rollout, now)
                            if publish:
                                after_commit(session, partial(self.publish, publish))
                except Exception as exc:  # one broken rollout must not hold up the others
                    self.last_error = f"rollout {rollout_id}: {type(exc).__name__}: {exc}"
                    log.exception("rollout %s: tick failed (rolled back, retried next tick)", rollout_id)
            self.ticks += 1

    def publish(self, items: list[Desired]) -> None:
        """Send desired states (after their commit); a broker that is down is logged, not raised."""
        if self.publisher is None:
            return
        for device_id, doc in items:
            try:
                self.publisher.publish_desired(device_id, doc)
            except Exception:  # the broker is down: the retained state is republished on reconnect
                log.warning("could not publish desired state of %s", device_id, exc_info=True)

    def _tick_rollout(self, session: Session, rollout: Rollout, now: float) -> list[Desired]:
        self._memo = {}
        self._encrypted = rollout.encrypted
        # A running rollout loads as rows only the actions this tick may change (services/rollout_scan.py).
        paced = getattr(self.publisher, "backlog", None) is not None  # as _window: only with a gateway
        window = self.window.ceiling() if paced else None
        scanned = rollout_scan.scan(session, rollout, now, self.unhealthy_at(), window)
        actions = rsvc.actions_of(session, rollout.id or 0) if scanned is None else scanned
        rows = [a for a in actions if not isinstance(a, rollout_scan.ActionCopy)]
        # Only devices with something left to do are needed (a rollback touches every one). Rows for
        # 10,000 devices parsed every tick were most of the server's CPU, so their large JSON columns are
        # loaded only when used (reported: a rare reconciliation).
        everyone = rollout.state == "rolling_back"
        device_ids = {a.device_id for a in rows if everyone or a.state not in TERMINAL}
        devices: dict[str, Device] = {}
        if device_ids:
            stmt = select(Device).options(defer(_attr(Device.capabilities)), defer(_attr(Device.tags)))
            if not everyone:
                stmt = stmt.options(defer(_attr(Device.reported)))
            devices = {d.id: d for d in session.exec(stmt.where(col(Device.id).in_(device_ids)))}
        self._reconcile(session, actions, devices, now)
        publish: list[Desired] = self._time_out(session, rollout, actions, devices, now)
        # Resend refused deltas as raw: deploys while the rollout goes forward, reinstalls while it goes back.
        purpose = "rollback" if rollout.state == "rolling_back" else "deploy"
        publish += self._fall_back_to_raw(session, [a for a in actions if a.purpose == purpose], devices, now)
        if rollout.state == "running":
            actions += self._join(session, rollout, actions, devices, now)
            if not self._check_failures(session, rollout, actions):
                self._advance_waves(session, rollout, actions, now)
                if rollout.state == "running":
                    publish += self._dispatch(session, rollout, actions, devices, now)
        if rollout.state == "rolling_back":
            if scanned is not None:  # it turned to rolling back in this tick: a rollback needs every row
                actions = rsvc.actions_of(session, rollout.id or 0)
            publish += self._roll_back(session, rollout, actions, devices, now)
        session.add(rollout)
        return publish

    def _reconcile(
        self, session: Session, actions: list[DeviceAction], devices: dict[str, Device], now: float
    ) -> None:
        """A device whose reported state already shows the action's goal has done it, even if its status
        message was lost; a finished rollback marks the deploy it undid as rolled back."""
        for a in actions:
            device = devices.get(a.device_id)
            if (
                a.state in IN_FLIGHT
                and device is not None
                and a.target_model_sha256
                and device.active_model_sha256 == a.target_model_sha256  # before loading `reported`
                and (device.reported or {}).get("phase") == "idle"
            ):
                a.state, a.updated_at = "confirmed", now
                self.count_sent(session, a)
                session.add(a)
        undone = {a.device_id for a in actions if a.purpose == "rollback" and a.state == "confirmed"}
        for a in actions:
            if a.purpose == "deploy" and a.device_id in undone and a.state != "rolled_back":
                a.state, a.updated_at = "rolled_back", now
                session.add(a)

    def unhealthy_at(self) -> float:
        """The latest of: server start, a failed tick, the gateway unable to store device messages."""
        gateway = getattr(self.publisher, "last_unhealthy", None)  # only the MQTT gateway has it
        return max(self._unhealthy_at, gateway() if gateway is not None else 0.0)

    def _time_out(
        self,
        session: Session,
        rollout: Rollout,
        actions: list[DeviceAction],
        devices: dict[str, Device],
        now: float,
    ) -> list[Desired]:
        """An action times out after action_timeout_seconds without progress *while messages flowed*:
        a device's status held by a broker or database outage (or sent while the server was down) is
        delivered after it, so the deadline is at least a full timeout after the outage ended.
        Reconciliation against reported state ran just before (_reconcile).

        The server ignores statuses for a closed action, so the device's retained desired state must
        stop naming it: it becomes `none` (as for an aborted action), else a device that comes back
        later would carry out an action the server no longer tracks (issue 19, item 7)."""
        since = self.unhealthy_at()
        publish: list[Desired] = []
        for a in actions:
            if overdue(a, rollout, now, since):
                a.state = "timed_out"
                a.error = f"no progress for {rollout.action_timeout_seconds:g} s (last state reported)"
                a.updated_at = now
                session.add(a)
                device = devices.get(a.device_id) or session.get(Device, a.device_id)
                if device is not None and (device.desired or {}).get("action_id") == a.id:
                    device.desired = rsvc.none_desired()
                    session.add(device)
                    publish.append((device.id, device.desired))
        return publish

    def _join(
        self,
        session: Session,
        rollout: Rollout,
        actions: list[DeviceAction],
        devices: dict[str, Device],
        now: float,
    ) -> list[DeviceAction]:
        """Matching devices that came online or were provisioned since the start join the current wave."""
        have = {a.device_id for a in actions if a.purpose == "deploy"}
        joined = []
        skipped = list(rollout.skipped_devices or [])
        facts: dict[str, Any] = {}
        for device in rsvc.eligible_devices(session, rollout, online_only=True, exclude=have):
            pkg = pkgsvc.package_for(session, rollout.model_version_id, device.hardware_class)
            if pkg is None:
                continue
            # A late joiner is judged like the devices at the start: one that would refuse the package
            # is left out and listed, never sent a download that ends in a predictable failure.
            refusal = compat.predict(session, device, pkg, facts, encrypted=rollout.encrypted)
            if refusal is not None:
                skipped.append(refusal.public())
                log.info("rollout %s: %s left out: %s", rollout.id, device.id, refusal.reason)
                continue
            action = rsvc.new_action(
                rollout, device, purpose="deploy", operation="install", wave=rollout.current_wave, now=now
            )
            action.package_id, action.target_model_sha256 = pkg.id, pkg.model_sha256
            session.add(action)
            devices[device.id] = device
            joined.append(action)
        if len(skipped) != len(rollout.skipped_devices or []):
            rollout.skipped_devices = sorted(skipped, key=lambda d: str(d["device_id"]))
        if joined:
            sizes = list(rollout.wave_sizes)
            sizes[rollout.current_wave] += len(joined)
            rollout.wave_sizes = sizes
            log.info("rollout %s: %d device(s) joined wave %d", rollout.id, len(joined), rollout.current_wave)
        return joined

    def _check_failures(self, session: Session, rollout: Rollout, actions: list[DeviceAction]) -> bool:
        deploys = [a for a in actions if a.purpose == "deploy"]
        failures = sum(1 for a in deploys if a.state in FAILED) - rollout.failure_baseline
        if failures <= 0:
            return False
        limit = rollout.failure_threshold
        if limit.get("count") is not None:
            tripped = failures >= int(limit["count"])
            what = f"{failures} failed device(s), threshold {limit['count']}"
        else:
            # Percent of the devices that finished, judged only once enough have finished that a single
            # failure cannot reach the threshold on its own (or when every device has finished).
            percent = float(limit["percent"])
            finished = sum(1 for a in deploys if a.state in TERMINAL)
            if finished < min(len(deploys), math.floor(100.0 / percent) + 1):
                return False
            share = 100.0 * failures / max(finished, 1)
            tripped = share >= percent
            what = f"{failures} of {finished} finished devices failed ({share:.1f}%), threshold {percent:g}%"
        if not tripped:
            return False
        if rollout.failure_action == "rollback":
            rollout.state, rollout.state_reason = "rolling_back", f"failure threshold reached: {what}"
        else:
            rollout.state, rollout.state_reason = "paused", f"failure threshold reached: {what}"
        log.warning("rollout %s: %s", rollout.id, rollout.state_reason)
        return True

    def _advance_waves(
        self, session: Session, rollout: Rollout, actions: list[DeviceAction], now: float
    ) -> None:
        deploys = [a for a in actions if a.purpose == "deploy"]
        while rollout.state == "running":
            wave = [a for a in deploys if a.wave == rollout.current_wave]
            confirmed = sum(1 for a in wave if a.state == "confirmed")
            needed = math.ceil(rollout.success_threshold_percent * len(wave) / 100 - 1e-9)
            if confirmed < needed and rollout.wave_passed_at is None:
                if wave and all(a.state in TERMINAL for a in wave):
                    rollout.state = "paused"
                    rollout.state_reason = (
                        f"wave {rollout.current_wave + 1} ended with {confirmed}/{len(wave)} confirmed,"
                        f" below the success threshold of {rollout.success_threshold_percent:g}%"
                    )
                return
            if rollout.wave_passed_at is None:
                rollout.wave_passed_at = now
            last = rollout.current_wave + 1 >= len(rollout.wave_sizes)
            # The canary gate holds the next wave back; the last wave has none to hold (nor a control group).
            gated = bool(wave and rollout.canary and not last)
            if gated and canary_gate.check(session, rollout, wave, now) != canary_gate.PASSED:
                return  # window open, waiting for data, or stopped by the gate's policy
            if wave and rollout.soak_seconds > 0 and now - rollout.wave_passed_at < rollout.soak_seconds:
                return  # soaking: the wave's devices keep running the model before the next wave
            if rollout.current_wave + 1 >= len(rollout.wave_sizes):
                rollout.state, rollout.state_reason, rollout.finished_at = "completed", "", now
                return
            rollout.current_wave += 1
            rollout.wave_passed_at = None

    def _window(self, in_flight: int) -> int | None:
        """Devices that may be in flight (services/rollout_pacing.py); None without a gateway to ask."""
        backlog = getattr(self.publisher, "backlog", None)  # only the MQTT gateway has it
        return None if backlog is None else self.window.update(int(backlog()), in_flight)

    def _dispatch(
        self,
        session: Session,
        rollout: Rollout,
        actions: list[DeviceAction],
        devices: dict[str, Device],
        now: float,
    ) -> list[Desired]:
        in_flight = sum(1 for a in actions if a.state in IN_FLIGHT)
        room = rollout.max_concurrent - in_flight
        window = self._window(in_flight)
        if window is not None:
            room = min(room, window - in_flight)
        publish: list[Desired] = []
        sent: list[tuple[DeviceAction, Device]] = []
        for a in actions:
            if room <= 0:
                break
            device = devices.get(a.device_id)
            if a.state != "queued" or a.wave > rollout.current_wave or device is None or not device.online:
                continue
            if not self._assign_payload(session, a, device):
                continue  # its variant is being built; the builder wakes the driver when it is ready
            a.previous_model_sha256 = device.active_model_sha256
            if device.active_model_sha256:
                memo_key = ("previous", device.active_model_sha256, device.hardware_class)
                if memo_key not in self._memo:
                    prev = pkgsvc.latest_package_with_model(
                        session, device.active_model_sha256, device.hardware_class
                    )
                    self._memo[memo_key] = prev.id if prev else None
                a.previous_package_id = self._memo[memo_key]
            a.state, a.notified_at, a.updated_at = "notified", now, now
            sent.append((a, device))
            room -= 1
        self._wrap_keys(session, sent)  # an encrypted rollout's key wraps: all of them in one INSERT
        for a, device in sent:
            device.desired = self._desired_install(session, a, device)
            session.add(a)
            session.add(device)
            publish.append((device.id, device.desired))
        return publish
