"""Canary-gate traffic for the rollout tests: a gated two-wave rollout of 1.1.0 on the scripted fleet
(tests/support/rollout_fleet.py) and telemetry reports from every device, the canary wave's with chosen
metrics made worse (BAD)."""

from __future__ import annotations

from typing import Any

from tests.support.rollout_fleet import Fleet

WINDOW = 60.0
BASE_HIST = [13] * 8 + [12] * 8  # 200 classified inferences spread over 16 classes
GOOD = {"errors": 2, "latency_us_mean": 1000.0, "confidence_mean": 0.80, "class_histogram": BASE_HIST}
BAD = {
    "error_rate": {"errors": 12},  # 6 % against 1 %
    "latency": {"latency_us_mean": 1300.0},  # 30 % slower
    "confidence": {"confidence_mean": 0.70},
    "class_distribution": {"class_histogram": [110] + [6] * 15},  # collapses onto class 0
}


def gate_config(**over: Any) -> dict[str, Any]:
    return {"window_seconds": WINDOW, "min_inferences": 1000, "min_devices": 2, **over}


def start(fleet: Fleet, devices: int = 6, **canary: Any) -> tuple[int, list[str]]:
    """A rollout of 1.1.0 in two waves (2 devices, then the rest) with a canary gate; returns its id
    and the first wave's devices, confirmed at fleet.t0 (the gate's window starts then)."""
    for i in range(devices):
        fleet.add_device(f"dev-{i}")
    r = fleet.create(waves=[{"count": 2}, {"percent": 100}], canary=gate_config(**canary))
    fleet.step(fleet.t0, rounds=2)
    first = [a["device_id"] for a in fleet.actions(r["id"]) if a["wave"] == 0]
    assert all(fleet.devices[d].active_sha() == fleet.sha(fleet.v2) for d in first)
    return r["id"], first


def publish(fleet: Fleet, until: float, canary_devices: list[str], **canary_over: Any) -> None:
    """Every online device reports 200 inferences per 10 s of its active model from t0 to `until`; the
    canary devices with `canary_over` in their reports."""
    seqs: dict[str, int] = {}
    messages: list[tuple[str, dict[str, Any]]] = []
    ts = fleet.t0 + 10
    while ts <= until:
        for dev in fleet.devices.values():
            report = {
                "ts": ts,
                "model_sha256": dev.active_sha(),
                "inference_count": 200,
                "latency_estimated": False,
                "arena_bytes": 4096,
                "boot": 1,
                "seq": seqs.setdefault(dev.device_id, 0),
                **GOOD,
                **(canary_over if dev.device_id in canary_devices else {}),
            }
            seqs[dev.device_id] += 1
            messages.append((dev.device_id, {"reports": [report]}))
        ts += 10
    fleet.send_telemetry(messages)
