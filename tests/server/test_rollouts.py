"""Rollout driver with scripted devices: waves, concurrency, thresholds, soak, pause/resume, abort,
rollback (revert and reinstall), joining devices, timeouts, restart-resume; and the rollouts API."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pytest

from tests.support.paths import SHARED_MODELS
from tests.support.server_scripted import ScriptedDevice
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import Device
from tinyfleet.server.services.messages import DeviceMessages
from tinyfleet.server.services.telemetry_ingest import TelemetryIngest
from tinyfleet.signing.keys import TrustStore

# The rollout driver's logic is exercised on SQLite; the tests marked BOTH also run on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

PAIRS = SHARED_MODELS / "pairs"


@dataclass
class Fleet:
    api: object
    ctx: AppContext
    messages: DeviceMessages
    devices: dict[str, ScriptedDevice]
    v1: dict
    v2: dict
    t0: float = 0.0
    now: float = 0.0
    telemetry: TelemetryIngest | None = None  # telemetry's one path, the batching writer, on `now`

    def send_telemetry(self, messages: list[tuple[str, dict]]) -> None:
        """(device_id, telemetry message) pairs stored as one batch, as the gateway's writer does."""
        assert self.telemetry is not None
        self.telemetry.write_now((device_id, json.dumps(msg).encode()) for device_id, msg in messages)

    def sha(self, version: dict) -> str:
        return version["packages"][0]["model_sha256"]

    def add_device(
        self, device_id: str, *, online: bool = True, hardware_class: int = 1, blank: bool = False, **labels
    ) -> ScriptedDevice:
        """A device running v1 in slot 0, or with no model at all (`blank`)."""
        self.api.ok(
            "POST", "/api/devices", 201, json={"id": device_id, "hardware_class": hardware_class, **labels}
        )
        store = TrustStore(bytes.fromhex(k["public_key"]) for k in self.api.ok("GET", "/api/trust-store"))
        dev = ScriptedDevice(
            device_id,
            hardware_class,
            self.messages.handle,
            store,
            slots=[None if blank else self.sha(self.v1), None],
            active=None if blank else 0,
            seqs=[0 if blank else self.v1["packages"][0]["sequence"], 0],
        )
        self.devices[device_id] = dev
        if online:
            dev.come_online()
        return dev

    def desired(self, device_id: str) -> dict | None:
        with self.ctx.session() as s:
            return s.get(Device, device_id).desired

    def step(self, now: float, *, rounds: int = 1) -> None:
        """Tick, let every device act on its desired state, tick again."""
        self.now = now
        for _ in range(rounds):
            self.ctx.rollout_driver.tick(now)
            for dev in self.devices.values():
                dev.follow(self.desired(dev.device_id))
            self.ctx.rollout_driver.tick(now)

    def rollout(self, rid: int) -> dict:
        return self.api.ok("GET", f"/api/rollouts/{rid}")

    def actions(self, rid: int, **params) -> list[dict]:
        return self.api.ok("GET", f"/api/rollouts/{rid}/actions", params=params)

    def create(self, start: bool = True, **body) -> dict:
        body.setdefault("name", "r")
        body.setdefault("model_version_id", self.v2["id"])
        return self.api.ok("POST", "/api/rollouts", 201, json={"start": start, **body})


@pytest.fixture
def fleet(api, shared_models) -> Fleet:
    model = api.ok("POST", "/api/models", 201, json={"name": "hello"})
    url = f"/api/models/{model['id']}/versions"
    v1 = api.ok(
        "POST",
        url,
        201,
        params={"version": "1.0.0", "hardware_class": 1},
        content=(PAIRS / "hello_world_int8.0.tflite").read_bytes(),
    )
    v2 = api.ok(
        "POST",
        url,
        201,
        params={"version": "1.1.0", "hardware_class": 1},
        content=(PAIRS / "hello_world_int8.1.tflite").read_bytes(),
    )
    api.ok("PUT", "/api/hardware-classes/1", json={"name": "m4", "chunk_size": 512})
    fleet = Fleet(api, api.ctx, None, {}, v1, v2, t0=time.time(), now=time.time())  # type: ignore[arg-type]
    fleet.messages = DeviceMessages(
        api.ctx.db, default_chunk_size=1024, stats=api.ctx.stats, clock=lambda: fleet.now
    )
    fleet.telemetry = TelemetryIngest(api.ctx.db, api.ctx.stats, clock=lambda: fleet.now)
    return fleet


def test_waves_and_max_concurrency(fleet):
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
        assert s.get(Device, "dev-00").active_model_sha256 == fleet.sha(fleet.v2)


@SQLITE_ONLY
def test_failure_threshold_pauses_then_resume_continues(fleet):
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


def test_percent_failure_threshold_triggers_rollback_by_revert(fleet):
    for i in range(4):
        fleet.add_device(f"dev-{i}")
    fleet.devices["dev-3"].behaviour = "fail"
    r = fleet.create(failure_threshold={"percent": 25}, failure_action="rollback", max_concurrent=10)
    fleet.step(fleet.t0)
    state = fleet.rollout(r["id"])
    assert state["state"] == "rolling_back" and "25" in state["state_reason"]
    rollback = fleet.actions(r["id"], purpose="rollback")
    assert {a["operation"] for a in rollback} == {"revert"} and len(rollback) == 3
    assert all(fleet.desired(a["device_id"])["operation"] == "revert" for a in rollback)
    fleet.step(fleet.t0 + 1, rounds=2)
    done = fleet.rollout(r["id"])
    assert done["state"] == "rolled_back", done
    assert done["deploy"]["by_state"] == {"rolled_back": 4}
    assert all(d.active_sha() == fleet.sha(fleet.v1) for d in fleet.devices.values())


@SQLITE_ONLY
def test_manual_rollback_reinstalls_old_package_when_other_slot_lost(fleet):
    for i in range(2):
        fleet.add_device(f"dev-{i}")
    r = fleet.create()
    fleet.step(fleet.t0, rounds=2)
    assert fleet.rollout(r["id"])["state"] == "completed"
    lost = fleet.devices["dev-1"]
    lost.slots[1 - lost.active] = None  # the other slot no longer holds the old model
    lost.publish("reported", lost.reported())
    fleet.api.ok("POST", f"/api/rollouts/{r['id']}/rollback")
    fleet.ctx.rollout_driver.tick(fleet.t0 + 1)
    by_device = {a["device_id"]: a for a in fleet.actions(r["id"], purpose="rollback")}
    assert by_device["dev-0"]["operation"] == "revert"
    assert by_device["dev-1"]["operation"] == "install"
    # v1's own package (sequence 1) would be refused as a replay over v2 (sequence 2): the server
    # re-signed the same model with the next sequence number
    rebuilt = fleet.api.ok("GET", f"/api/packages/{by_device['dev-1']['package_id']}")
    assert rebuilt["rebuilt_from"] == fleet.v1["packages"][0]["id"] and rebuilt["sequence"] == 3
    assert rebuilt["model_sha256"] == fleet.sha(fleet.v1) and rebuilt["version"] == "1.0.0"
    desired = fleet.desired("dev-1")
    assert desired["operation"] == "install" and desired["model_sha256"] == fleet.sha(fleet.v1)
    fleet.step(fleet.t0 + 2, rounds=2)
    assert fleet.rollout(r["id"])["state"] == "rolled_back"
    assert all(d.active_sha() == fleet.sha(fleet.v1) for d in fleet.devices.values())


@SQLITE_ONLY
def test_device_joins_running_rollout_when_it_comes_online(fleet):
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
def test_soak_time_holds_next_wave(fleet):
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
def test_hanging_device_times_out_and_counts_as_failure(fleet):
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
def test_wave_below_success_threshold_pauses(fleet):
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


def test_restart_resumes_running_rollout(fleet, db_url, tmp_path):
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
def test_abort_cancels_notified_devices(fleet):
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


def test_rollout_api_commands_and_invalid_requests(fleet):
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
def test_version_without_package_for_any_device_class(fleet):
    fleet.add_device("dev-x", hardware_class=9)
    r = fleet.create(start=False, selector={"hardware_class": 9})
    resp = fleet.api.client.post(f"/api/rollouts/{r['id']}/start")
    assert resp.status_code == 409


@SQLITE_ONLY
def test_telemetry_per_model_version(fleet):
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
def test_percent_threshold_waits_for_enough_finished_devices(fleet):
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


@SQLITE_ONLY
def test_rollback_refused_by_security_floor_is_reported(fleet):
    dev = fleet.add_device("dev-0")
    r = fleet.create()
    fleet.step(fleet.t0, rounds=2)
    assert fleet.rollout(r["id"])["state"] == "completed"
    dev.slots[1 - dev.active] = None
    report = dev.reported() | {"security_floor": 7}
    dev.publish("reported", report)
    fleet.api.ok("POST", f"/api/rollouts/{r['id']}/rollback")
    fleet.step(fleet.t0 + 1)
    [back] = fleet.actions(r["id"], purpose="rollback")
    assert back["state"] == "failed" and back["error_code"] == 34 and "security floor 7" in back["error"]
    done = fleet.rollout(r["id"])
    assert done["state"] == "rolled_back" and "1 device(s) could not be rolled back" in done["state_reason"]
    assert done["rollback_outcome"] == {"failed": 1} and back["outcome"] == "failed"


def test_completed_rollout_rolled_back_per_device_outcomes(fleet):
    """Rolling back a completed rollout returns every device that ran a model before it to that model
    (revert when the other slot holds it, else reinstall); a device that ran none is reported as such
    (state skipped, outcome no_previous_model), not as a failure, and keeps the rollout's model."""
    fleet.add_device("dev-0")
    lost = fleet.add_device("dev-1")
    fleet.add_device("new-0", blank=True)
    fleet.add_device("new-1", blank=True)
    r = fleet.create()
    fleet.step(fleet.t0, rounds=2)
    done = fleet.rollout(r["id"])
    assert done["state"] == "completed" and done["deploy"]["by_state"] == {"confirmed": 4}
    assert done["rollback_outcome"] == {}
    lost.slots[1 - lost.active] = None  # its other slot no longer holds v1: reinstalled
    lost.publish("reported", lost.reported())
    fleet.api.ok("POST", f"/api/rollouts/{r['id']}/rollback")
    fleet.step(fleet.t0 + 1, rounds=3)

    done = fleet.rollout(r["id"])
    assert done["state"] == "rolled_back", done
    assert done["rollback_outcome"] == {"reverted": 1, "reinstalled": 1, "no_previous_model": 2}
    assert done["rollback"]["by_state"] == {"confirmed": 2, "skipped": 2}
    assert done["deploy"]["by_state"] == {"rolled_back": 2, "confirmed": 2}  # the new ones keep v2
    assert "1 device(s) reverted, 1 device(s) reinstalled" in done["state_reason"]
    assert "2 device(s) had no previous model (left on hello 1.1.0)" in done["state_reason"]
    assert "could not be rolled back" not in done["state_reason"]
    backs = {a["device_id"]: a for a in fleet.actions(r["id"], purpose="rollback")}
    assert {d: a["outcome"] for d, a in backs.items()} == {
        "dev-0": "reverted",
        "dev-1": "reinstalled",
        "new-0": "no_previous_model",
        "new-1": "no_previous_model",
    }
    assert backs["new-0"]["state"] == "skipped" and backs["new-0"]["error_code"] == 41
    assert backs["new-0"]["error"].startswith("no_previous_model")
    assert all(a["outcome"] is None for a in fleet.actions(r["id"], purpose="deploy"))
    assert (
        fleet.api.ok("GET", "/api/rollouts", params={"state": "rolled_back"})[0]["rollback_outcome"]
        == (done["rollback_outcome"])
    )
    on = {d: dev.active_sha() for d, dev in fleet.devices.items()}
    assert on == {
        "dev-0": fleet.sha(fleet.v1),
        "dev-1": fleet.sha(fleet.v1),
        "new-0": fleet.sha(fleet.v2),
        "new-1": fleet.sha(fleet.v2),
    }
    # a rollout that is rolled back cannot be rolled back again
    resp = fleet.api.client.post(f"/api/rollouts/{r['id']}/rollback")
    assert resp.status_code == 409


def test_completed_first_rollout_has_nothing_to_roll_back_to(fleet):
    """A completed rollout whose devices ran no model before it: the rollback is refused (409) with the
    reason, and the rollout stays completed with its counts unchanged (the runtime cannot uninstall)."""
    for i in range(3):
        fleet.add_device(f"new-{i}", blank=True)
    r = fleet.create()
    fleet.step(fleet.t0, rounds=2)
    before = fleet.rollout(r["id"])
    assert before["state"] == "completed" and before["deploy"]["by_state"] == {"confirmed": 3}
    resp = fleet.api.client.post(f"/api/rollouts/{r['id']}/rollback")
    assert resp.status_code == 409, resp.text
    detail = resp.json()["detail"]
    assert "none of its 3 device(s) ran a model before it" in detail and "no_previous_model" in detail
    assert "hello 1.1.0" in detail
    fleet.step(fleet.t0 + 1)
    after = fleet.rollout(r["id"])
    assert (after["state"], after["state_reason"]) == ("completed", before["state_reason"])
    assert after["deploy"] == before["deploy"] and after["rollback"]["total"] == 0
    assert after["rollback_outcome"] == {}
    assert all(d.active_sha() == fleet.sha(fleet.v2) for d in fleet.devices.values())


@SQLITE_ONLY
def test_running_rollout_rolled_back_reports_devices_without_previous_model(fleet):
    """The automatic rollback of a running rollout: a device that had no model is reported as
    no_previous_model, the others revert, the rollout ends rolled_back with consistent counts."""
    fleet.add_device("dev-0")
    fleet.add_device("new-0", blank=True)
    bad = fleet.add_device("dev-2")
    bad.behaviour = "fail"
    r = fleet.create(failure_threshold={"count": 1}, failure_action="rollback", max_concurrent=10)
    fleet.step(fleet.t0, rounds=3)
    done = fleet.rollout(r["id"])
    assert done["state"] == "rolled_back", done
    assert done["rollback_outcome"] == {"reverted": 1, "no_previous_model": 1, "unchanged": 1}
    assert done["deploy"]["by_state"] == {"rolled_back": 2, "confirmed": 1}
    assert sum(done["rollback_outcome"].values()) == done["deploy"]["total"]


def test_rollback_refused_while_devices_follow_another_rollout(fleet):
    fleet.add_device("dev-0")
    first = fleet.create()
    fleet.step(fleet.t0, rounds=2)
    assert fleet.rollout(first["id"])["state"] == "completed"
    second = fleet.create(model_version_id=fleet.v1["id"], start=True)
    assert second["state"] == "running"
    resp = fleet.api.client.post(f"/api/rollouts/{first['id']}/rollback")
    assert resp.status_code == 409 and "another active rollout" in resp.json()["detail"]
    assert fleet.rollout(first["id"])["state"] == "completed"
