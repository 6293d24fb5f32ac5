"""Canary gates through the real broker, control plane and agents: a release trained on shuffled labels
confirms on every canary device (its self-test holds) but its telemetry fails the gate, which rolls it
back; the good v2 passes the same gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.e2e_harness import e2e_env, failing_metrics, telemetry_profile
from tinyfleet.demo_models import SILENTLY_WRONG

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Four canaries at 5 inferences a second: the minimum is reached within the window. Thresholds as the
# demo's: well above a good release's sampling noise, well below a useless model's confidence drop.
GATE = {
    "window_seconds": 6.0,
    "min_inferences": 80,
    "min_devices": 2,
    "confidence_max_drop": 0.10,
    "class_jsd_max": 0.10,
    "max_wait_seconds": 60.0,
    "on_fail": "rollback",
}


def test_gate_rolls_back_a_silently_wrong_model_and_passes_a_good_one(tmp_path: Path) -> None:
    with e2e_env(tmp_path) as env:
        if len(env.releases) <= SILENTLY_WRONG:
            pytest.skip("TensorFlow unavailable: no silently wrong vibration model")
        specs, provisioned = env.provision(20, "gate", telemetry_profile())
        env.fleet(specs, provisioned[0].trusted_keys, processes=1)
        v1 = env.wait_rollout(env.rollout("gate-v1", 0, "gate")["id"], ("completed",))
        assert v1["state"] == "completed"
        waves = [{"percent": 20}, {"percent": 100}]

        good = env.rollout("gate-v2", 1, "gate", waves=waves, canary=GATE)
        good = env.wait_rollout(good["id"], ("completed", "paused", "rolled_back"))
        assert good["state"] == "completed", good
        assert [g["verdict"] for g in good["gates"]] == ["pass"], good["gates"]
        assert set(env.active_models(specs).values()) == {env.releases[1].model_sha256}

        bad = env.rollout("gate-v4", SILENTLY_WRONG, "gate", waves=waves, canary=GATE)
        bad = env.wait_rollout(bad["id"], ("completed", "paused", "rolled_back"))
        assert bad["state"] == "rolled_back", bad
        (gate,) = bad["gates"]
        assert gate["verdict"] == "fail" and gate["wave"] == 0
        # The devices confirmed it: only the telemetry told it apart.
        actions = env.api.rollout_actions(bad["id"], purpose="deploy")
        assert sum(a["state"] == "confirmed" or a["state"] == "rolled_back" for a in actions) >= 4
        assert not any(a["error_code"] for a in actions if a["wave"] == 0)
        failed = failing_metrics(bad)
        assert "confidence" in failed, gate
        conf = failed["confidence"]
        assert conf["canary"] < conf["control"] - GATE["confidence_max_drop"]
        assert conf["canary_devices"] >= 2 and conf["canary_samples"] >= GATE["min_inferences"]
        assert "confidence" in bad["state_reason"] and "canary gate wave 1 failed" in bad["state_reason"]
        assert set(env.active_models(specs).values()) == {env.releases[1].model_sha256}
