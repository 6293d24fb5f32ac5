"""Drift alarms: a version's recent telemetry against its own baseline right after its rollout
completed. Scripted devices publish telemetry through DeviceMessages (as the MQTT gateway feeds it);
the check runs directly (`check_drift`) or through the job that also sends the webhooks."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support.rollout_fleet import Fleet
from tinyfleet.server.services.drift import DriftConfig, DriftJob, check_drift

WINDOW = 60.0
CFG = DriftConfig(window=WINDOW, min_inferences=1000)
BASE_HIST = [13] * 8 + [12] * 8  # 200 classified inferences over 16 classes
DRIFTED_HIST = [110] + [6] * 15  # collapses onto class 0


def steady(fleet: Fleet, devices: int = 3) -> float:
    """Roll 1.1.0 out to every device; returns when the rollout completed (the baseline starts then)."""
    for i in range(devices):
        fleet.add_device(f"dev-{i}")
    r = fleet.create(waves=[{"percent": 100}])
    fleet.step(fleet.t0, rounds=3)
    done = fleet.rollout(r["id"])
    assert done["state"] == "completed", done["state_reason"]
    return float(done["finished_at"])


def publish(
    fleet: Fleet, start: float, *, reports: int = 6, hist: list[int] = BASE_HIST, confidence: float = 0.8
) -> None:
    """Every device reports 200 inferences per 10 s from `start` (`reports` of them)."""
    seqs: dict[str, int] = fleet.__dict__.setdefault("seqs", {})
    for k in range(reports):
        ts = start + 5 + 10 * k
        fleet.now = ts
        messages: list[tuple[str, dict[str, Any]]] = []
        for dev in fleet.devices.values():
            report = {
                "ts": ts,
                "model_sha256": dev.active_sha(),
                "inference_count": 200,
                "errors": 0,
                "latency_us_mean": 1000.0,
                "latency_estimated": False,
                "confidence_mean": confidence,
                "class_histogram": hist,
                "arena_bytes": 4096,
                "boot": 1,
                "seq": seqs.setdefault(dev.device_id, 0),
            }
            seqs[dev.device_id] += 1
            messages.append((dev.device_id, {"reports": [report]}))
        fleet.send_telemetry(messages)  # one batch per period, on the clock of its reports


def check(fleet: Fleet, now: float) -> list[tuple[str, str]]:
    with fleet.ctx.session() as s:
        return [(what, a.kind) for what, a in check_drift(s, now, CFG)]


def alerts(fleet: Fleet, **params: Any) -> list[dict[str, Any]]:
    return fleet.api.ok("GET", "/api/alerts", params=params)


def test_steady_telemetry_raises_nothing(fleet):
    done = steady(fleet)
    publish(fleet, done)
    publish(fleet, done + 540)
    assert check(fleet, done + 600) == []
    assert alerts(fleet) == []


def test_drifted_inputs_open_one_alert_per_kind(fleet):
    done = steady(fleet)
    publish(fleet, done)
    publish(fleet, done + 540, hist=DRIFTED_HIST, confidence=0.6)
    assert sorted(check(fleet, done + 600)) == [("opened", "class_drift"), ("opened", "confidence_drop")]
    opened = {a["kind"]: a for a in alerts(fleet, state="open", model_version_id=fleet.v2["id"])}
    conf = opened["confidence_drop"]
    assert conf["numbers"]["baseline"] == pytest.approx(0.8) and conf["numbers"]["recent"] == pytest.approx(
        0.6
    )
    assert conf["numbers"]["baseline_samples"] == 3600 and conf["opened_at"] == done + 600
    assert "mean confidence 0.600 vs baseline 0.800" in conf["message"]
    assert opened["class_drift"]["numbers"]["value"] > 0.05
    assert alerts(fleet, model_version_id=fleet.v1["id"]) == []
    assert alerts(fleet, state="resolved") == []


def test_only_the_drifted_metric_fires(fleet):
    done = steady(fleet)
    publish(fleet, done)
    publish(fleet, done + 540, confidence=0.7)
    assert check(fleet, done + 600) == [("opened", "confidence_drop")]


def test_not_enough_data_or_no_steady_state_fires_nothing(fleet):
    done = steady(fleet)
    publish(fleet, done)
    publish(fleet, done + 540, reports=1, hist=DRIFTED_HIST, confidence=0.5)  # 600 < 1000 inferences
    assert check(fleet, done + 600) == []
    publish(fleet, done + 60, reports=6, hist=DRIFTED_HIST, confidence=0.5)
    # the recent window still overlaps the baseline: the version is not in steady state yet
    assert check(fleet, done + 110) == []
    assert alerts(fleet) == []


def test_refiring_updates_the_open_alert_and_recovery_resolves_it(fleet):
    done = steady(fleet)
    publish(fleet, done)
    publish(fleet, done + 540, confidence=0.6)
    assert check(fleet, done + 600) == [("opened", "confidence_drop")]
    assert check(fleet, done + 610) == [("updated", "confidence_drop")]  # same window, still drifted
    [alert] = alerts(fleet)
    assert (
        alert["state"] == "open" and alert["last_seen_at"] == done + 610 and alert["opened_at"] == done + 600
    )
    publish(fleet, done + 1140)  # back to normal
    assert check(fleet, done + 1200) == [("resolved", "confidence_drop")]
    [alert] = alerts(fleet)
    assert alert["state"] == "resolved" and alert["resolved_at"] == done + 1200
    assert check(fleet, done + 1200) == []  # nothing open, nothing to resolve
    publish(fleet, done + 1740, confidence=0.6)
    assert check(fleet, done + 1800) == [("opened", "confidence_drop")]  # a new alert, the old one stays
    assert [a["state"] for a in alerts(fleet)] == ["open", "resolved"]


# --- webhooks ---------------------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    """A webhook receiver on 127.0.0.1 (a free port) that answers 500 to its first `fail_first` POSTs."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.posts: list[tuple[int, dict[str, Any]]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            status = 500 if len(self.server.posts) < self.server.fail_first else 204
            self.server.posts.append((status, body))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(fail_first=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhooks_get_open_and_resolve_with_a_retry_after_500(fleet, receiver):
    settings = fleet.ctx.settings.with_overrides(
        alert_webhooks=(receiver.url,), drift_window_seconds=WINDOW, alert_webhook_attempts=3
    )
    job = DriftJob(fleet.ctx.db, settings.validate())
    job.notifier.backoff = 0.05  # the back-off doubles from here; seconds would only slow the test
    try:
        done = steady(fleet)
        publish(fleet, done)
        publish(fleet, done + 540, confidence=0.6)
        assert [what for what, _a in job.run_once(done + 600)] == ["opened"]
        assert job.notifier.wait_idle(30)
        assert [status for status, _b in receiver.posts] == [500, 204]  # the first try failed, retried
        body = receiver.posts[1][1]
        assert body["event"] == "opened" and body["alert"]["kind"] == "confidence_drop"
        assert body["alert"]["model_version_id"] == fleet.v2["id"] and body["alert"]["state"] == "open"
        assert job.run_once(done + 610)[0][0] == "updated"  # no webhook for a re-firing alert
        publish(fleet, done + 1140)
        assert [what for what, _a in job.run_once(done + 1200)] == ["resolved"]
        assert job.notifier.wait_idle(30)
        assert [b["event"] for _s, b in receiver.posts] == ["opened", "opened", "resolved"]
        assert receiver.posts[-1][1]["alert"]["resolved_at"] == done + 1200
        n = job.notifier
        assert (n.delivered, n.failed, n.attempts_made) == (2, 0, 3)
    finally:
        job.stop()


def test_an_unreachable_webhook_is_given_up_on_without_blocking(fleet, receiver):
    receiver.fail_first = 100
    settings = fleet.ctx.settings.with_overrides(
        alert_webhooks=(receiver.url,), drift_window_seconds=WINDOW, alert_webhook_attempts=2
    )
    job = DriftJob(fleet.ctx.db, settings.validate())
    job.notifier.backoff = 0.01
    try:
        done = steady(fleet)
        publish(fleet, done)
        publish(fleet, done + 540, confidence=0.6)
        assert [what for what, _a in job.run_once(done + 600)] == ["opened"]  # returns: delivery is queued
        assert job.notifier.wait_idle(30)
        assert (job.notifier.delivered, job.notifier.failed, job.notifier.attempts_made) == (0, 1, 2)
    finally:
        job.stop()
