"""Rollout driver with scripted devices: waves, concurrency, thresholds, soak, pause/resume, abort,
joining devices, timeouts, restart-resume; and the rollouts API. Rollbacks: test_rollbacks.py."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.rollout_fleet import SQLITE_ONLY, Fleet
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import Device
from tinyfleet.server.services.messages import DeviceMessages


def test_waves_and_max_concurrency(fleet: Fleet) -> None:
    for i in range(10):
        fleet.add_device(f"dev-{i:02d}")
    r = fleet.create(waves=[{"count": 1}, {"percent": 50}, {"percent": 100}], max_concurrent=2)
    assert r["state"] == "running" and r["wave_sizes"] == [1, 5, 4]
    fleet.ctx.rollout_driver.tick(fleet.t0)
    notified = fleet.actions(r["id"], state="notified")
    assert len(notified) == 1 and notified[0]["wave"] == 0  # only the canary wave
    peak = 0
    for k in range(12):
        fleet.now = fleet.t0 + k
        fleet.ctx.rollout_driver.tick(fleet.t0 + k)
        in_flight = [a for a in fleet.actions(r["id"]) if a["state"] in ("notified", "downloading", "trial")]
        peak = max(peak, len(in_flight))
        waves_touched = {a["wave"] for a in fleet.actions(r["id"]) if a["state"] != "queued"}
        assert max(waves_touched) <= fleet.rollout(r["id"])["current_wave"]
        for dev in fleet.devices.values():
            dev.follow(fleet.desired(dev.device_id))
    assert peak == 2
    done = fleet.rollout(r["id"])
    assert done["state"] == "completed" and done["deploy"]["by_state"] == {"confirmed": 10}
    assert all(d.active_sha() == fleet.sha(fleet.v2) for d in fleet.devices.values())
    assert max(d.max_chunk_seen for d in fleet.devices.values()) == 512  # the hardware class's chunk size
    with fleet.ctx.session() as s:
        device = s.get(Device, "dev-00")
        assert device is not None and device.active_model_sha256 == fleet.sha(fleet.v2)


@SQLITE_ONLY
def test_failure_threshold_pauses_then_resume_continues(fleet: Fleet) -> None:
    for i in range(4):
        fleet.add_device(f"dev-{i}")
    bad = fleet.devices["dev-2"]
    bad.behaviour = "fail"
    r = fleet.create(failure_threshold={"count": 1}, failure_action="pause", success_threshold_percent=50)
    fleet.step(fleet.t0, rounds=3)
    paused = fleet.rollout(r["id"])
    assert paused["state"] == "paused" and "failure threshold" in paused["state_reason"]
    failed = fleet.actions(r["id"], state="failed")
    assert [(a["device_id"], a["error_code"]) for a in failed] == [("dev-2", 42)]
    assert "self-test" in failed[0]["error"]
    fleet.api.ok("POST", f"/api/rollouts/{r['id']}/resume")
    fleet.step(fleet.t0 + 1, rounds=3)
    assert fleet.rollout(r["id"])["state"] == "completed"


@SQLITE_ONLY
def test_device_joins_running_rollout_when_it_comes_online(fleet: Fleet) -> None:
    fleet.add_device("dev-a", tags=["eu"])
    fleet.add_device("dev-b", tags=["us"])
    r = fleet.create(selector={"tags": ["eu"]}, waves=[{"count": 1}, {"percent": 100}], soak_seconds=60)
    fleet.step(fleet.t0)
    assert fleet.rollout(r["id"])["state"] == "running"  # soaking after wave 1
    late = fleet.add_device("dev-c", tags=["eu"], online=False)
    fleet.step(fleet.t0 + 1)
    assert {a["device_id"] for a in fleet.actions(r["id"])} == {"dev-a"}
    late.come_online()
    fleet.step(fleet.t0 + 2)
    joined = {a["device_id"]: a for a in fleet.actions(r["id"])}
    assert set(joined) == {"dev-a", "dev-c"} and joined["dev-c"]["state"] == "confirmed"
    assert fleet.devices["dev-b"].active_sha() == fleet.sha(fleet.v1)  # not selected
    fleet.step(fleet.t0 + 61)
    assert fleet.rollout(r["id"])["state"] == "completed"


@SQLITE_ONLY
def test_soak_time_holds_next_wave(fleet: Fleet) -> None:
    for i in range(3):
        fleet.add_device(f"dev-{i}")
    r = fleet.create(waves=[{"count": 1}, {"count": 2}], soak_seconds=100)
    fleet.step(fleet.t0)
    assert fleet.rollout(r["id"])["current_wave"] == 0
    fleet.step(fleet.t0 + 50)
    assert fleet.rollout(r["id"])["current_wave"] == 0
    assert len(fleet.actions(r["id"], state="queued")) == 2
    fleet.step(fleet.t0 + 101)
    assert fleet.rollout(r["id"])["current_wave"] == 1
    fleet.step(fleet.t0 + 102)
    fleet.step(fleet.t0 + 203)
    assert fleet.rollout(r["id"])["state"] == "completed"


@SQLITE_ONLY
def test_hanging_device_times_out_and_counts_as_failure(fleet: Fleet) -> None:
    fleet.add_device("dev-0").behaviour = "hang"
    fleet.add_device("dev-1")
    r = fleet.create(action_timeout_seconds=30, failure_threshold={"count": 1}, max_concurrent=5)
    fleet.step(fleet.t0)
    assert fleet.rollout(r["id"])["state"] == "running"
    fleet.step(fleet.t0 + 31)
    timed_out = fleet.actions(r["id"], state="timed_out")
    assert [a["device_id"] for a in timed_out] == ["dev-0"] and "no progress" in timed_out[0]["error"]
    assert fleet.rollout(r["id"])["state"] == "paused"


@SQLITE_ONLY
def test_wave_below_success_threshold_pauses(fleet: Fleet) -> None:
    for i in range(2):
        fleet.add_device(f"dev-{i}")
    fleet.devices["dev-1"].behaviour = "fail"
    r = fleet.create(failure_threshold={"count": 5}, success_threshold_percent=100)
    fleet.step(fleet.t0, rounds=2)
    state = fleet.rollout(r["id"])
    assert state["state"] == "paused" and "below the success threshold" in state["state_reason"]
    fleet.api.ok("POST", f"/api/rollouts/{r['id']}/resume")
    fleet.step(fleet.t0 + 1)
    assert fleet.rollout(r["id"])["state"] == "completed"


def test_restart_resumes_running_rollout(fleet: Fleet, db_url: str, tmp_path: Path) -> None:
    for i in range(4):
        fleet.add_device(f"dev-{i}")
    r = fleet.create(waves=[{"count": 1}, {"percent": 100}], max_concurrent=1)
    fleet.step(fleet.t0)
    before = fleet.rollout(r["id"])
    assert before["state"] == "running" and before["deploy"]["by_state"].get("confirmed", 0) < 4
    fleet.ctx.db.dispose()
    # a new server process: new context, rollout driver and handler on the same database
    from tinyfleet.server.config import Settings

    ctx2 = AppContext(Settings(database_url=db_url, data_dir=tmp_path / "data").validate())
    fleet.ctx = ctx2
    fleet.messages = DeviceMessages(ctx2.db, default_chunk_size=1024, clock=lambda: fleet.now)
    for dev in fleet.devices.values():
        dev.send = fleet.messages.handle
    for k in range(8):
        fleet.step(fleet.t0 + 1 + k)
    from tinyfleet.server.services import rollouts as rsvc

    with ctx2.session() as s:
        rollout = rsvc.get_rollout(s, r["id"])
        assert rollout.state == "completed"
        assert all(a.state == "confirmed" for a in rsvc.actions_of(s, r["id"]))
    ctx2.db.dispose()


@SQLITE_ONLY
def test_abort_cancels_notified_devices(fleet: Fleet) -> None:
    for i in range(3):
        fleet.add_device(f"dev-{i}")
    r = fleet.create(max_concurrent=1)
    fleet.ctx.rollout_driver.tick(fleet.t0)
    [notified] = fleet.actions(r["id"], state="notified")
    out = fleet.api.ok("POST", f"/api/rollouts/{r['id']}/abort")
    assert out["state"] == "aborted"
    assert fleet.desired(notified["device_id"])["operation"] == "none"
    fleet.step(fleet.t0 + 1)
    assert fleet.rollout(r["id"])["deploy"]["by_state"] == {"failed": 1, "queued": 2}
    resp = fleet.api.client.post(f"/api/rollouts/{r['id']}/resume")
    assert resp.status_code == 409 and "aborted" in resp.json()["detail"]


def test_rollout_api_commands_and_invalid_requests(fleet: Fleet) -> None:
    fleet.add_device("dev-0")
    api = fleet.api
    draft = fleet.create(start=False)
    assert draft["state"] == "draft" and draft["model_name"] == "hello" and draft["version"] == "1.1.0"
    for cmd in ("pause", "resume", "rollback"):
        resp = api.client.post(f"/api/rollouts/{draft['id']}/{cmd}")
        assert resp.status_code == 409 and "draft" in resp.json()["detail"]
    assert api.ok("POST", f"/api/rollouts/{draft['id']}/start")["state"] == "running"
    assert api.client.post(f"/api/rollouts/{draft['id']}/start").status_code == 409
    assert api.ok("POST", f"/api/rollouts/{draft['id']}/pause")["state"] == "paused"
    assert api.ok("POST", f"/api/rollouts/{draft['id']}/resume")["state"] == "running"
    assert [r["id"] for r in api.ok("GET", "/api/rollouts", params={"state": "running"})] == [draft["id"]]
    # the device is busy in that rollout: a second rollout finds no one
    second = fleet.create(start=False, name="second")
    resp = api.client.post(f"/api/rollouts/{second['id']}/start")
    assert resp.status_code == 409 and "no online device" in resp.json()["detail"]
    bad_bodies = [
        ({"name": "x", "model_version_id": 999}, 404, "model version 999 not found"),
        (
            {"name": "x", "model_version_id": fleet.v2["id"], "waves": [{"percent": 10, "count": 1}]},
            422,
            "exactly one of percent or count",
        ),
        ({"name": "x", "model_version_id": fleet.v2["id"], "waves": []}, 422, "body.waves"),
        (
            {"name": "x", "model_version_id": fleet.v2["id"], "waves": [{"percent": 120}]},
            422,
            "body.waves.0.percent",
        ),
        (
            {"name": "x", "model_version_id": fleet.v2["id"], "failure_threshold": {}},
            422,
            "exactly one of count",
        ),
        (
            {"name": "x", "model_version_id": fleet.v2["id"], "failure_action": "explode"},
            422,
            "failure_action",
        ),
        ({"name": "x", "model_version_id": fleet.v2["id"], "max_concurrent": 0}, 422, "max_concurrent"),
        ({"name": "x", "model_version_id": fleet.v2["id"], "selector": {"colour": "red"}}, 422, "colour"),
        ({"model_version_id": fleet.v2["id"]}, 422, "body.name"),
    ]
    for body, status, fragment in bad_bodies:
        resp = api.client.post("/api/rollouts", json=body)
        assert resp.status_code == status, (body, resp.text)
        assert fragment in resp.json()["detail"], resp.text
    assert api.client.get("/api/rollouts/999").status_code == 404
    assert api.client.post("/api/rollouts/999/start").status_code == 404
    assert api.client.post(f"/api/rollouts/{draft['id']}/explode").status_code == 422
    assert api.client.get("/api/rollouts", params={"state": "weird"}).status_code == 422
    assert (
        api.client.get(f"/api/rollouts/{draft['id']}/actions", params={"state": "weird"}).status_code == 422
    )
    assert len(api.ok("GET", "/api/devices/dev-0/actions")) == 1


@SQLITE_ONLY
def test_version_without_package_for_any_device_class(fleet: Fleet) -> None:
    fleet.add_device("dev-x", hardware_class=9)
    r = fleet.create(start=False, selector={"hardware_class": 9})
    resp = fleet.api.client.post(f"/api/rollouts/{r['id']}/start")
    assert resp.status_code == 409


@SQLITE_ONLY
def test_telemetry_per_model_version(fleet: Fleet) -> None:
    dev = fleet.add_device("dev-t")
    report = {
        "ts": fleet.t0,
        "inference_count": 5,
        "latency_us_mean": 10.0,
        "latency_estimated": True,
        "class_histogram": [5],
        "confidence_mean": 0.9,
        "errors": 0,
        "arena_bytes": 100,
    }
    # A report is accepted only for the model the device reports active (issue 11 item 8).
    fleet.send_telemetry([("dev-t", {"reports": [report | {"model_sha256": fleet.sha(fleet.v1)}]})])
    dev.slots[1], dev.active = fleet.sha(fleet.v2), 1
    dev.publish("reported", dev.reported())
    v2_report = report | {"model_sha256": fleet.sha(fleet.v2), "ts": fleet.t0 + 5}
    fleet.send_telemetry([("dev-t", {"reports": [v2_report]})])
    rows = fleet.api.ok("GET", "/api/telemetry", params={"model_version_id": fleet.v2["id"]})
    assert [r["model_sha256"] for r in rows] == [fleet.sha(fleet.v2)]
    summary = fleet.api.ok(
        "GET",
        "/api/telemetry/summary",
        params={"model_version_id": fleet.v1["id"], "since": fleet.t0 - 1, "until": fleet.t0 + 1},
    )
    assert summary["reports"] == 1 and summary["inference_count"] == 5
    assert json.dumps(summary)  # serialisable as the API returns it


@SQLITE_ONLY
def test_percent_threshold_waits_for_enough_finished_devices(fleet: Fleet) -> None:
    for i in range(10):
        fleet.add_device(f"dev-{i}")
    r = fleet.create(failure_threshold={"percent": 20}, max_concurrent=1, success_threshold_percent=50)
    # the first device fails: 1 of 1 finished is 100%, but 20% is judged only from 6 finished devices
    fleet.ctx.rollout_driver.tick(fleet.t0)
    [notified] = fleet.actions(r["id"], state="notified")
    fleet.devices[notified["device_id"]].behaviour = "fail"
    for k in range(4):
        fleet.step(fleet.t0 + k)
    state = fleet.rollout(r["id"])
    assert state["state"] == "running", state
    assert state["deploy"]["by_state"]["failed"] == 1 and state["deploy"]["by_state"]["confirmed"] == 3
    # a second failure: 2 of 5 finished is not judged yet; one more finished device makes 2 of 6 = 33%
    [notified] = fleet.actions(r["id"], state="notified")
    fleet.devices[notified["device_id"]].behaviour = "fail"
    fleet.step(fleet.t0 + 10)
    assert fleet.rollout(r["id"])["state"] == "running"
    fleet.step(fleet.t0 + 11)
    state = fleet.rollout(r["id"])
    assert state["state"] == "paused" and "2 of 6 finished" in state["state_reason"], state
