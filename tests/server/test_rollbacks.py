"""Rollbacks of rollouts with scripted devices: automatic (failure threshold) and manual, by revert or
by reinstalling the previous package re-signed, per-device outcomes, and the refusals (security floor,
nothing to roll back to, devices following another rollout)."""

from __future__ import annotations

from tests.support.rollout_fleet import SQLITE_ONLY, Fleet


def test_percent_failure_threshold_triggers_rollback_by_revert(fleet: Fleet) -> None:
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
def test_manual_rollback_reinstalls_old_package_when_other_slot_lost(fleet: Fleet) -> None:
    for i in range(2):
        fleet.add_device(f"dev-{i}")
    r = fleet.create()
    fleet.step(fleet.t0, rounds=2)
    assert fleet.rollout(r["id"])["state"] == "completed"
    lost = fleet.devices["dev-1"]
    assert lost.active is not None
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
def test_rollback_refused_by_security_floor_is_reported(fleet: Fleet) -> None:
    dev = fleet.add_device("dev-0")
    r = fleet.create()
    fleet.step(fleet.t0, rounds=2)
    assert fleet.rollout(r["id"])["state"] == "completed"
    assert dev.active is not None
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


def test_completed_rollout_rolled_back_per_device_outcomes(fleet: Fleet) -> None:
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
    assert lost.active is not None
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


def test_completed_first_rollout_has_nothing_to_roll_back_to(fleet: Fleet) -> None:
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
def test_running_rollout_rolled_back_reports_devices_without_previous_model(fleet: Fleet) -> None:
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


def test_rollback_refused_while_devices_follow_another_rollout(fleet: Fleet) -> None:
    fleet.add_device("dev-0")
    first = fleet.create()
    fleet.step(fleet.t0, rounds=2)
    assert fleet.rollout(first["id"])["state"] == "completed"
    second = fleet.create(model_version_id=fleet.v1["id"], start=True)
    assert second["state"] == "running"
    resp = fleet.api.client.post(f"/api/rollouts/{first['id']}/rollback")
    assert resp.status_code == 409 and "another active rollout" in resp.json()["detail"]
    assert fleet.rollout(first["id"])["state"] == "completed"
