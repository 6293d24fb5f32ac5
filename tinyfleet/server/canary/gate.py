"""The canary gate as a rollout driver step: read the wave's and the control group's telemetry over the
same window, store each metric's verdict (CanaryGate rows) and apply the gate's policy.

Canary: the wave's confirmed devices, reports of the model they were given. Control: every other device
reporting a model the canary devices ran before the rollout, over the same window: the rollout's targets
not yet updated and the rest of the fleet still on that model. Rows decide everything, as in the driver:
a restarted server re-evaluates from the stored window.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session, col, select

from tinyfleet.server.canary import stats
from tinyfleet.server.models import CanaryGate, DeviceAction, Rollout, TelemetryReport

log = logging.getLogger(__name__)

OPEN, PASSED, STOPPED = "open", "passed", "stopped"
DECIDED = ("pass", "accepted")
REASON_PREFIX = "canary gate"  # a pause by the gate starts with it: resume then accepts the wave


def thresholds(cfg: dict[str, Any]) -> stats.Thresholds:
    return stats.Thresholds(
        min_inferences=int(cfg["min_inferences"]),
        min_devices=int(cfg["min_devices"]),
        error_rate_max_increase=float(cfg["error_rate_max_increase"]),
        error_rate_alpha=float(cfg["error_rate_alpha"]),
        latency_max_increase=float(cfg["latency_max_increase"]),
        confidence_max_drop=float(cfg["confidence_max_drop"]),
        class_jsd_max=float(cfg["class_jsd_max"]),
    )


def gate_of(session: Session, rollout_id: int, wave: int) -> CanaryGate | None:
    return session.exec(
        select(CanaryGate).where(CanaryGate.rollout_id == rollout_id, CanaryGate.wave == wave)
    ).first()


def gates_of(session: Session, rollout_id: int) -> list[CanaryGate]:
    stmt = select(CanaryGate).where(CanaryGate.rollout_id == rollout_id).order_by(col(CanaryGate.wave))
    return list(session.exec(stmt))


def _sample(rows: list[TelemetryReport]) -> stats.Sample:
    s = stats.Sample()
    for r in rows:
        s.add(r.inference_count, r.errors, r.latency_us_mean, r.confidence_mean, list(r.class_histogram))
    s.devices = len({r.device_id for r in rows})
    return s


def samples(
    session: Session, wave: list[DeviceAction], since: float, until: float
) -> tuple[stats.Sample, stats.Sample]:
    """(canary, control) telemetry of a wave over [since, until] (device clocks, `ts`)."""
    confirmed = [a for a in wave if a.state == "confirmed" and a.target_model_sha256]
    new = {(a.device_id, a.target_model_sha256) for a in confirmed}
    baseline = {a.previous_model_sha256 for a in confirmed if a.previous_model_sha256}
    wave_ids = {a.device_id for a in wave}
    in_window = select(TelemetryReport).where(TelemetryReport.ts >= since, TelemetryReport.ts <= until)
    canary: list[TelemetryReport] = []
    if new:
        stmt = in_window.where(col(TelemetryReport.device_id).in_({d for d, _ in new}))
        canary = [r for r in session.exec(stmt) if (r.device_id, r.model_sha256) in new]
    control: list[TelemetryReport] = []
    if baseline:
        stmt = in_window.where(col(TelemetryReport.model_sha256).in_(baseline))
        control = [r for r in session.exec(stmt) if r.device_id not in wave_ids]
    return _sample(canary), _sample(control)


def _stop(rollout: Rollout, action: str, reason: str) -> None:
    rollout.state = "rolling_back" if action == "rollback" else "paused"
    rollout.state_reason = reason[:500]
    log.warning("rollout %s: %s", rollout.id, rollout.state_reason)


def check(session: Session, rollout: Rollout, wave: list[DeviceAction], now: float) -> str:
    """The current wave's gate, evaluated now: OPEN (window open or waiting for data), PASSED (the next
    wave may go) or STOPPED (the rollout was paused or set rolling back by the gate's policy)."""
    cfg = rollout.canary or {}
    number = rollout.current_wave
    gate = gate_of(session, rollout.id or 0, number)
    if gate is None:
        start = rollout.wave_passed_at if rollout.wave_passed_at is not None else now
        gate = CanaryGate(
            rollout_id=rollout.id or 0,
            wave=number,
            verdict="pending",
            window_start=start,
            window_end=start + float(cfg["window_seconds"]),
            created_at=now,
        )
        session.add(gate)
    if gate.verdict in DECIDED:
        return PASSED
    closes = gate.window_start + float(cfg["window_seconds"])
    if now < closes:
        return OPEN
    # Waiting for data widens the window to now: both sides keep accumulating over the same span.
    gate.window_end = max(closes, now)
    canary, control = samples(session, wave, gate.window_start, gate.window_end)
    results = stats.evaluate(canary, control, thresholds(cfg))
    gate.metrics, gate.evaluated_at = results, now
    session.add(gate)
    label = f"{REASON_PREFIX} wave {number + 1}"
    failed = [m for m in stats.METRICS if results[m]["verdict"] == stats.FAIL]
    if failed:
        gate.verdict = "fail"
        gate.reason = f"{label} failed: " + "; ".join(stats.describe(m, results[m]) for m in failed)
        gate.reason = gate.reason[:500]
        _stop(rollout, str(cfg["on_fail"]), gate.reason)
        return STOPPED
    short = [m for m in stats.METRICS if results[m]["verdict"] == stats.NOT_ENOUGH_DATA]
    if not short:
        gate.verdict, gate.reason = "pass", f"{label} passed"
        return PASSED
    waited = now - closes
    detail = "; ".join(stats.describe(m, results[m]) for m in short)
    gate.verdict = "not_enough_data"
    if waited < float(cfg["max_wait_seconds"]):
        gate.reason = f"{label} waiting for data ({waited:.0f} s of {cfg['max_wait_seconds']:g} s): {detail}"[
            :500
        ]
        return OPEN
    if cfg["on_not_enough_data"] == "pass":
        gate.verdict = "pass"
        gate.reason = f"{label} passed without enough data after {waited:.0f} s: {detail}"[:500]
        return PASSED
    gate.reason = f"{label} held: not enough data after {waited:.0f} s: {detail}"[:500]
    _stop(rollout, "pause", gate.reason)
    return STOPPED


def accept(session: Session, rollout: Rollout) -> None:
    """The operator resumed a rollout the gate stopped: the wave is accepted as it is."""
    if not rollout.canary or not rollout.state_reason.startswith(REASON_PREFIX):
        return
    gate = gate_of(session, rollout.id or 0, rollout.current_wave)
    if gate is not None and gate.verdict not in DECIDED:
        gate.verdict = "accepted"
        gate.reason = f"{gate.reason[:440]}; accepted by the operator"
        session.add(gate)
