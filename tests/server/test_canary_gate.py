"""The canary gate in the rollout driver: scripted devices publish telemetry through DeviceMessages (as
the MQTT gateway feeds it) and the driver compares the first wave (on 1.1.0) with the devices still on
1.0.0 over the same window; verdicts and numbers are stored and shown by the API and the CLI."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.canary_traffic import BAD, WINDOW, publish, start
from tinyfleet.server.canary import stats
from tinyfleet.server.cli.rollouts import gate_rows


def verdicts(gate: dict[str, Any]) -> dict[str, str]:
    return {m: r["verdict"] for m, r in gate["metrics"].items()}


def test_a_good_release_passes_the_gate_on_every_metric(fleet):
    rid, first = start(fleet)
    fleet.step(fleet.t0 + 30)
    r = fleet.rollout(rid)
    assert r["current_wave"] == 0 and r["gates"][0]["verdict"] == "pending"  # the window is open
    assert fleet.actions(rid, state="queued")  # the second wave waits
    publish(fleet, fleet.t0 + WINDOW, first)
    fleet.step(fleet.t0 + WINDOW + 1, rounds=2)
    r = fleet.rollout(rid)
    assert r["state"] == "completed", r["state_reason"]
    gate = r["gates"][0]
    assert gate["wave"] == 0 and gate["verdict"] == "pass"
    assert verdicts(gate) == dict.fromkeys(stats.METRICS, "pass")
    err = gate["metrics"]["error_rate"]
    # 2 canary devices x 6 reports x 200 inferences against the 4 devices still on 1.0.0
    assert (err["canary_samples"], err["control_samples"]) == (2400, 4800)
    assert (err["canary_devices"], err["control_devices"]) == (2, 4)
    assert err["canary"] == pytest.approx(0.01) and err["control"] == pytest.approx(0.01)
    assert err["threshold"] == 0.01 and err["p_value"] > 0.05
    assert gate["metrics"]["latency"]["canary"] == pytest.approx(1000.0)
    assert gate["metrics"]["class_distribution"]["canary"] == pytest.approx(0.0)
    assert r["canary"]["window_seconds"] == WINDOW and r["canary"]["on_fail"] == "pause"
    # the CLI's table of the same response: one row per metric with the numbers
    rows = gate_rows(r["gates"])
    assert [row[2:4] for row in rows] == [[m, "pass"] for m in stats.METRICS]
    assert rows[0][4:] == ["1.00%", "1.00%", "+1.00 pp", "2400/4800 (2/4 dev)"]


@pytest.mark.parametrize(
    ("metric", "policy"),
    [
        ("error_rate", "rollback"),
        ("latency", "pause"),
        ("confidence", "rollback"),
        ("class_distribution", "pause"),
    ],
)
def test_a_bad_release_fails_on_each_metric(fleet, metric, policy):
    rid, first = start(fleet, on_fail=policy)
    publish(fleet, fleet.t0 + WINDOW, first, **BAD[metric])
    fleet.step(fleet.t0 + WINDOW + 1)
    r = fleet.rollout(rid)
    gate = r["gates"][0]
    assert gate["verdict"] == "fail"
    assert {m for m, v in verdicts(gate).items() if v == "fail"} == {metric}
    assert r["state_reason"].startswith(f"canary gate wave 1 failed: {metric}")
    assert len(fleet.actions(rid, state="queued")) == 4  # the second wave never went
    if policy == "pause":
        assert r["state"] == "paused"
    else:  # the canary devices went back to 1.0.0 (by revert) within the same step
        assert r["state"] == "rolled_back" and r["rollback_outcome"] == {"reverted": 2}
        assert all(d.active_sha() == fleet.sha(fleet.v1) for d in fleet.devices.values())


def test_failure_reason_names_the_numbers(fleet):
    rid, first = start(fleet)
    publish(fleet, fleet.t0 + WINDOW, first, **BAD["error_rate"])
    fleet.step(fleet.t0 + WINDOW + 1)
    reason = fleet.rollout(rid)["state_reason"]
    assert "error_rate 6.00% vs 1.00% (max +1.00 pp, p=" in reason, reason


def test_not_enough_data_holds_the_wave_then_pauses_and_resume_accepts(fleet):
    rid, first = start(fleet, min_inferences=5000, max_wait_seconds=120)
    publish(fleet, fleet.t0 + WINDOW, first)
    fleet.step(fleet.t0 + WINDOW + 1)
    r = fleet.rollout(rid)
    assert r["state"] == "running" and r["current_wave"] == 0
    gate = r["gates"][0]
    assert gate["verdict"] == "not_enough_data"
    assert set(verdicts(gate).values()) == {"not_enough_data"}
    assert "waiting for data" in gate["reason"] and gate["metrics"]["error_rate"]["canary_samples"] == 2400
    assert len(fleet.actions(rid, state="queued")) == 4
    # re-evaluated each tick over a window that grows to now; past the wait it pauses (hold)
    fleet.step(fleet.t0 + WINDOW + 121)
    r = fleet.rollout(rid)
    assert r["state"] == "paused" and "held: not enough data" in r["state_reason"]
    assert r["gates"][0]["window_end"] == pytest.approx(fleet.t0 + WINDOW + 121)
    fleet.api.ok("POST", f"/api/rollouts/{rid}/resume")
    fleet.step(fleet.t0 + WINDOW + 122, rounds=2)
    r = fleet.rollout(rid)
    assert r["state"] == "completed" and r["gates"][0]["verdict"] == "accepted"


def test_not_enough_data_can_pass_by_policy(fleet):
    rid, _ = start(fleet, min_inferences=5000, max_wait_seconds=0, on_not_enough_data="pass")
    fleet.step(fleet.t0 + WINDOW + 1, rounds=2)
    r = fleet.rollout(rid)
    assert r["state"] == "completed" and r["gates"][0]["verdict"] == "pass"
    assert "passed without enough data" in r["gates"][0]["reason"]


def test_more_data_during_the_wait_decides(fleet):
    rid, first = start(fleet, min_inferences=3000)
    publish(fleet, fleet.t0 + WINDOW, first)
    fleet.step(fleet.t0 + WINDOW + 1)
    assert fleet.rollout(rid)["gates"][0]["verdict"] == "not_enough_data"
    publish(fleet, fleet.t0 + 2 * WINDOW, first)  # the same devices go on reporting (later seqs)
    fleet.step(fleet.t0 + 2 * WINDOW + 1, rounds=2)
    r = fleet.rollout(rid)
    assert r["state"] == "completed" and r["gates"][0]["verdict"] == "pass"


def test_gate_configuration_defaults_and_bad_input(fleet):
    fleet.add_device("dev-0")
    r = fleet.create(start=False, waves=[{"count": 1}, {"percent": 100}], canary={})
    assert r["canary"]["window_seconds"] == 300 and r["canary"]["on_not_enough_data"] == "hold"
    assert r["gates"] == []
    assert fleet.create(start=False)["canary"] is None
    for bad in ({"window_seconds": 0}, {"on_fail": "ignore"}, {"error_rate_alpha": 1}, {"unknown": 1}):
        body = {"name": "r", "model_version_id": fleet.v2["id"], "waves": [{"count": 1}, {"percent": 100}]}
        fleet.api.ok("POST", "/api/rollouts", 422, json={**body, "canary": bad})
    one_wave = fleet.api.ok(
        "POST", "/api/rollouts", 422, json={"name": "r", "model_version_id": fleet.v2["id"], "canary": {}}
    )
    assert "at least two waves" in json.dumps(one_wave)
