"""Telemetry over time (issue 13 part 1): per-minute rollups maintained at ingest, series at each
resolution, the comparison of two versions and retention. Reports go through the real telemetry writer
(services/telemetry_ingest.py) on both databases, as the MQTT gateway feeds it."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select

from tinyfleet.server.config import ConfigError, settings_from_env
from tinyfleet.server.models import TelemetryReport, TelemetryRollup
from tinyfleet.server.services import rollups
from tinyfleet.server.services import telemetry_stats as statsvc

STEP = 50.0  # seconds between a device's reports: crosses minute, 5-minute and hour boundaries
REPORTS = 60
# Hour-aligned start so that the 1h buckets split the reports at a known point.
START = math.floor(time.time() / 3600) * 3600 - 2 * 3600 + 3000
END = START + REPORTS * STEP


class Fleet:
    def __init__(self, api: Any, shared_models: Path) -> None:
        self.api = api
        self.messages = api.ctx.messages
        self.telemetry = api.ctx.telemetry_ingest
        model = api.ok("POST", "/api/models", 201, json={"name": "tele"})
        self.versions = []
        for i, name in enumerate(("1.0.0", "1.1.0")):
            data = (shared_models / "pairs" / f"hello_world_int8.{i}.tflite").read_bytes()
            params = {"version": name, "hardware_class": 1}
            mv = api.ok("POST", f"/api/models/{model['id']}/versions", 201, params=params, content=data)
            self.versions.append((mv["id"], mv["packages"][0]["model_sha256"]))
        self.sent: list[dict[str, Any]] = []
        for n in range(4):
            self.add_device(f"dev{n}", self.versions[n // 2][1])

    def add_device(self, device_id: str, sha: str) -> None:
        self.api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": 1})
        reported = {
            "runtime_version": 0x100,
            "hardware_class": 1,
            "phase": "idle",
            "active_slot": 0,
            "slots": [{"valid": True, "model_sha256": sha, "sequence": 1}],
        }
        self.messages.handle(f"tf/{device_id}/reported", json.dumps(reported).encode())

    def report(self, device: int, k: int) -> dict[str, Any]:
        """Report k of device dev{device}: figures that differ per device and per version."""
        version = device // 2
        n = 10 + k % 7 + device
        hist = [n - 2, 2] if version == 0 else [n // 2, n - n // 2 - 1, 1]
        return {
            "ts": START + k * STEP + device,
            "model_sha256": self.versions[version][1],
            "inference_count": n,
            "latency_us_mean": 1000.0 + 100 * version + k,
            "class_histogram": hist,
            "confidence_mean": 0.9 - 0.1 * version,
            "errors": k % 3 if version else k % 2,
            "arena_bytes": 4096,
            "boot": 1,
            "seq": k,
        }

    def send_all(self) -> None:
        messages = []
        for device in range(4):
            for first in range(0, REPORTS, 20):  # several messages, as a device batches its backlog
                batch = [self.report(device, k) for k in range(first, first + 20)]
                messages.append((f"dev{device}", json.dumps({"reports": batch}).encode()))
                self.sent += batch
        self.telemetry.write_now(messages)

    def totals(self, devices: set[int]) -> tuple[int, int]:
        rows = [r for r in self.sent if int(r["ts"] - START) % int(STEP) in devices]
        return sum(r["inference_count"] for r in rows), sum(r["errors"] for r in rows)


@pytest.fixture
def fleet(api, shared_models) -> Fleet:
    f = Fleet(api, shared_models)
    f.send_all()
    return f


def series(api, **params: Any) -> dict[str, Any]:
    out: dict[str, Any] = api.ok(
        "GET", "/api/telemetry/series", params={"since": START - 3600, "until": END + 3600} | params
    )
    return out


@pytest.mark.parametrize("resolution", ["raw", "1m", "5m", "1h"])
def test_series_at_each_resolution_sum_to_the_raw_totals(api, fleet, resolution):
    v1, v2 = fleet.versions[0][0], fleet.versions[1][0]
    for target, devices in (({"model_version_id": v1}, {0, 1}), ({"model_version_id": v2}, {2, 3})):
        want_n, want_err = fleet.totals(devices)
        inferences = series(api, metric="inferences", resolution=resolution, **target)
        errors = series(api, metric="errors", resolution=resolution, **target)
        assert sum(p["value"] for p in inferences["points"]) == want_n
        assert sum(p["value"] for p in errors["points"]) == want_err
        assert sum(p["reports"] for p in inferences["points"]) == 2 * REPORTS
        ts = [p["t"] for p in inferences["points"]]
        assert ts == sorted(ts)
        if resolution != "raw":
            step = statsvc.RESOLUTIONS[resolution]
            assert all(t % step == 0 for t in ts) and len(set(ts)) == len(ts)
    want_n, _ = fleet.totals({3})
    device = series(api, metric="inferences", resolution=resolution, device_id="dev3")
    assert sum(p["value"] for p in device["points"]) == want_n


def test_rate_and_mean_metrics_are_weighted_by_inferences(api, fleet):
    v2 = fleet.versions[1][0]
    hourly = series(api, metric="error_rate", resolution="1h", model_version_id=v2)["points"]
    assert len(hourly) == 2  # the reports cross one hour boundary
    for p in hourly:
        assert p["value"] == pytest.approx(p["errors"] / p["inference_count"])
    shares = series(api, metric="class_share", resolution="5m", model_version_id=v2)["points"]
    assert all(len(p["value"]) == 3 and sum(p["value"]) == pytest.approx(1.0) for p in shares)
    latency = series(api, metric="latency", resolution="raw", device_id="dev0")["points"]
    assert [p["value"] for p in latency] == [1000.0 + k for k in range(REPORTS)]
    assert {p["device_id"] for p in latency} == {"dev0"}
    confidence = series(api, metric="confidence", resolution="1m", model_version_id=v2)["points"]
    assert all(p["value"] == pytest.approx(0.8) for p in confidence)


def test_redelivered_reports_are_rolled_up_once(api, fleet):
    before = series(api, metric="inferences", resolution="1h", model_version_id=fleet.versions[0][0])
    batch = [fleet.report(0, k) for k in range(5)]
    fleet.telemetry.write_now([("dev0", json.dumps({"reports": batch}).encode())])
    assert fleet.messages.stats.events["telemetry_duplicates"] == 5
    after = series(api, metric="inferences", resolution="1h", model_version_id=fleet.versions[0][0])
    assert after["points"] == before["points"]


def test_compare_is_symmetric_and_matches_the_raw_reports(api, fleet):
    (v1, _), (v2, _) = fleet.versions
    window = {"since": START - 60, "until": END + 60}
    ab = api.ok("GET", "/api/telemetry/compare", params={"a": v1, "b": v2} | window)
    ba = api.ok("GET", "/api/telemetry/compare", params={"a": v2, "b": v1} | window)
    assert ab["a"] == ba["b"] and ab["b"] == ba["a"]
    assert ab["js_divergence"] == pytest.approx(ba["js_divergence"])
    assert 0 < ab["js_divergence"] <= 1
    same = api.ok("GET", "/api/telemetry/compare", params={"a": v1, "b": v1} | window)
    assert same["js_divergence"] == pytest.approx(0.0, abs=1e-12) and same["a"] == same["b"]
    want_n, want_err = fleet.totals({0, 1})
    assert ab["a"]["inference_count"] == want_n and ab["a"]["errors"] == want_err
    assert ab["a"]["error_rate"] == pytest.approx(want_err / want_n)
    assert sum(ab["b"]["class_distribution"]) == pytest.approx(1.0)
    # the rollups agree with the raw reports of the version's devices (what a canary gate may use)
    with api.ctx.session() as s:
        raw, _w = statsvc.window_stats(s, ab["since"], ab["until"], device_ids=["dev0", "dev1"])
        rolled, w = statsvc.window_stats(s, START + 1, END, model_version_id=v1)
    assert (w.since, w.until) == (START, rollups.minute_of(END - 1) + 60)
    exact = ("reports", "inference_count", "errors", "class_histogram")
    assert [getattr(raw, k) for k in exact] == [getattr(rolled, k) for k in exact]
    assert raw.class_histogram == ab["a"]["class_histogram"]
    assert raw.latency_us_mean == pytest.approx(rolled.latency_us_mean)
    assert raw.confidence_mean == pytest.approx(rolled.confidence_mean)


def test_js_divergence():
    assert statsvc.js_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert statsvc.js_divergence([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert statsvc.js_divergence([1.0], [0.5, 0.5]) == pytest.approx(statsvc.js_divergence([0.5, 0.5], [1.0]))
    assert statsvc.js_divergence([], [1.0]) is None


def count(api, table: Any) -> int:
    with api.ctx.session() as s:
        return int(s.exec(select(func.count()).select_from(table)).one())


def test_retention_prunes_old_raw_reports_and_rollups(api, fleet, monkeypatch):
    assert count(api, TelemetryReport) == 4 * REPORTS
    rolled = count(api, TelemetryRollup)
    half = START + REPORTS * STEP / 2
    now = time.time()
    monkeypatch.setattr(rollups, "PRUNE_BATCH", 7)  # several batches
    job = rollups.RetentionJob(api.ctx.db, now - half, 0, 300)
    assert job.run_once(now) == (4 * REPORTS // 2, 0)
    with api.ctx.session() as s:
        assert s.exec(select(func.min(TelemetryReport.ts))).one() >= half
    assert count(api, TelemetryRollup) == rolled  # rollups kept: version history outlives raw reports
    job = rollups.RetentionJob(api.ctx.db, 0, now - half, 300)
    _raw, pruned = job.run_once(now)
    assert 0 < pruned < rolled and count(api, TelemetryRollup) == rolled - pruned
    with api.ctx.session() as s:
        assert s.exec(select(func.min(TelemetryRollup.minute))).one() >= rollups.minute_of(half)
    assert rollups.RetentionJob(api.ctx.db, 0, 0, 300).enabled is False


def test_retention_settings():
    s = settings_from_env(
        {"TINYFLEET_TELEMETRY_RAW_RETENTION": "36h", "TINYFLEET_TELEMETRY_ROLLUP_RETENTION": "0"}
    )
    assert (s.telemetry_raw_retention_seconds, s.telemetry_rollup_retention_seconds) == (36 * 3600, 0)
    assert settings_from_env({}).telemetry_raw_retention_seconds == 7 * 86400
    for bad in ("-1d", "week", "7x"):
        with pytest.raises(ConfigError, match="TINYFLEET_TELEMETRY_RAW_RETENTION"):
            settings_from_env({"TINYFLEET_TELEMETRY_RAW_RETENTION": bad})


@pytest.mark.parametrize(
    ("path", "params", "fragment"),
    [
        ("series", {"metric": "bogus", "device_id": "dev0"}, "metric"),
        ("series", {"metric": "errors", "device_id": "dev0", "resolution": "2m"}, "resolution"),
        ("series", {"metric": "errors"}, "model_version_id or device_id"),
        ("series", {"metric": "errors", "device_id": "dev0", "since": 10, "until": 5}, "until must be after"),
        ("series", {"metric": "errors", "device_id": "dev0", "since": -1}, "since"),
        ("series", {"metric": "errors", "device_id": "dev0", "since": "soon"}, "since"),
        ("series", {"metric": "errors", "device_id": "dev0", "since": 0, "until": 2**40}, "more than"),
        ("series", {"metric": "errors", "model_version_id": -1}, "model_version_id"),
        ("compare", {"a": 1}, "query.b"),
        ("compare", {"a": "x", "b": 1}, "query.a"),
        ("compare", {"a": 1, "b": 2, "since": 5, "until": 5}, "until must be after"),
    ],
)
def test_bad_parameters_are_422(api, path, params, fragment):
    api.ok("POST", "/api/devices", 201, json={"id": "dev0", "hardware_class": 1})
    resp = api.client.get(f"/api/telemetry/{path}", params=params)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert fragment in detail and "\n" not in detail


def test_unknown_version_or_device_is_404(api):
    assert (
        api.client.get("/api/telemetry/series", params={"metric": "errors", "device_id": "nope"}).status_code
        == 404
    )
    assert (
        api.client.get(
            "/api/telemetry/series", params={"metric": "errors", "model_version_id": 9}
        ).status_code
        == 404
    )
    assert api.client.get("/api/telemetry/compare", params={"a": 9, "b": 9}).status_code == 404
