"""Telemetry integrity (issue 11 item 8): one device cannot poison fleet figures. Each refusal is counted
by reason and stores nothing; a redelivered report (same boot and seq) is stored once. Messages go
through the real telemetry writer (services/telemetry_ingest.py) on a real database, as the MQTT
gateway feeds it, one message per batch."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlmodel import select

from tinyfleet.server.models import TelemetryReport
from tinyfleet.server.services import telemetry as telsvc
from tinyfleet.server.services.messages import MAX_TELEMETRY_BYTES

SHA_A = "a" * 64
SHA_B = "b" * 64


def report(**over: Any) -> dict[str, Any]:
    r = {
        "ts": time.time(),
        "model_sha256": SHA_A,
        "inference_count": 50,
        "latency_us_mean": 1200.0,
        "class_histogram": [30, 20],
        "confidence_mean": 0.8,
        "errors": 1,
        "arena_bytes": 4096,
    }
    r.update(over)
    return r


@pytest.fixture
def device(api):
    api.ok("POST", "/api/devices", 201, json={"id": "dev-0", "hardware_class": 1})
    reported = {
        "runtime_version": 0x100,
        "hardware_class": 1,
        "phase": "idle",
        "active_slot": 0,
        "slots": [{"valid": True, "model_sha256": SHA_A, "sequence": 1}],
    }
    api.ctx.messages.handle("tf/dev-0/reported", json.dumps(reported).encode())
    return api.ctx.telemetry_ingest


def send(ingest, *reports: dict[str, Any], device_id: str = "dev-0") -> None:
    ingest.write_now([(device_id, json.dumps({"reports": list(reports)}).encode())])


def stored(api) -> list[TelemetryReport]:
    with api.ctx.session() as s:
        return list(s.exec(select(TelemetryReport)))


def test_a_plausible_report_is_stored(api, device):
    send(device, report(boot=7, seq=0))
    rows = stored(api)
    assert [(r.boot, r.seq, r.inference_count) for r in rows] == [(7, 0, 50)]
    assert device.stats.events["telemetry_rows"] == 1


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"model_sha256": SHA_B}, "wrong_model"),  # a model the device does not run
        ({"confidence_mean": 1.5}, "out_of_range"),
        ({"inference_count": 2**53}, "out_of_range"),
        ({"class_histogram": [40, 40]}, "out_of_range"),  # more classified than inferences
        ({"errors": 51}, "out_of_range"),
        ({"ts": time.time() + 3600}, "out_of_range"),  # a clock far ahead would widen the interval
    ],
)
def test_implausible_reports_are_refused_and_counted(api, device, bad, reason):
    send(device, report(**bad))
    assert stored(api) == []
    assert device.stats.rejected[reason] == 1
    assert device.stats.events["telemetry_rows"] == 0


def test_counts_must_fit_the_interval_since_the_previous_report(api, device):
    t0 = time.time() - 100
    send(device, report(ts=t0, inference_count=10))
    # 10 s later: at most MAX_INFERENCE_HZ x 10 s
    send(device, report(ts=t0 + 10, inference_count=telsvc.MAX_INFERENCE_HZ * 10 + 1, class_histogram=[]))
    send(device, report(ts=t0 + 20, inference_count=telsvc.MAX_INFERENCE_HZ * 10, class_histogram=[]))
    assert len(stored(api)) == 2
    assert device.stats.rejected["out_of_range"] == 1


def test_rate_limit_drops_the_excess_of_a_flood(api, device):
    t = time.time()
    sent = int(telsvc.RATE_BURST) + 30
    for i in range(sent):
        send(device, report(ts=t, seq=i, inference_count=1, class_histogram=[1], errors=0))
    kept = len(stored(api))
    limited = device.stats.rejected["rate_limited"]
    # The burst and what refilled while sending pass; the rest is counted, not stored.
    assert kept >= telsvc.RATE_BURST and limited > 0 and kept + limited == sent
    assert device.stats.events["telemetry_rows"] == kept


def test_oversized_and_malformed_payloads_are_counted(api, device):
    device.write_now([("dev-0", b"{" + b" " * MAX_TELEMETRY_BYTES + b"}")])
    device.write_now([("dev-0", json.dumps({"reports": [report(seq=-1)]}).encode())])
    assert stored(api) == []
    assert device.stats.malformed["telemetry"] == 2


def test_redelivered_reports_are_stored_once_and_gaps_counted(api, device):
    t = time.time()
    send(device, report(ts=t, boot=1, seq=0), report(ts=t, boot=1, seq=1))
    send(device, report(ts=t, boot=1, seq=1), report(ts=t, boot=1, seq=4))  # seq 1 again; 2, 3 missing
    send(device, report(ts=t, boot=2, seq=0))  # a new boot starts over
    assert sorted((r.boot, r.seq) for r in stored(api)) == [(1, 0), (1, 1), (1, 4), (2, 0)]
    assert device.stats.events["telemetry_duplicates"] == 1
    assert device.stats.events["telemetry_gaps"] == 2
    # reports without seq (older devices) are all kept
    send(device, report(ts=t), report(ts=t))
    assert len(stored(api)) == 6


def test_telemetry_has_one_path_the_writer(api, device):
    """DeviceMessages stores no telemetry (the gateway gives it to the writer): given some, it counts a
    handler error and stores nothing."""
    api.ctx.messages.handle("tf/dev-0/telemetry", json.dumps({"reports": [report(seq=0)]}).encode())
    assert stored(api) == []
    assert api.ctx.stats.events["handler_error"] == 1
    send(device, report(seq=0))
    assert len(stored(api)) == 1
