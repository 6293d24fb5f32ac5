"""Device telemetry: real inferences on the C engine through INFER frames, reported over MQTT."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from e2e_harness import e2e_env, wait_for

from simulator.profiles import get_profile

pytestmark = pytest.mark.timeout(180)


def test_devices_report_inference_telemetry(tmp_path: Path) -> None:
    profile = dataclasses.replace(get_profile("lan"), telemetry_period_s=0.5, inference_hz=4.0)
    with e2e_env(tmp_path) as env:
        specs, provisioned = env.provision(3, "tel", profile=profile)
        env.fleet(specs, provisioned[0].trusted_keys)
        rollout = env.rollout("tel-v1", 0, "tel")
        assert env.wait_rollout(rollout["id"], ("completed", "paused"))["state"] == "completed"
        v1 = env.releases[0].model_sha256
        ids = {s.device_id for s in specs}

        def reported_by_all() -> bool:
            rows = [r for r in env.api.telemetry(limit=1000) if r["device_id"] in ids]
            return {r["device_id"] for r in rows if r["model_sha256"] == v1} == ids

        wait_for(reported_by_all, 30, "telemetry from every device on v1")
        rows = [r for r in env.api.telemetry(limit=1000) if r["model_sha256"] == v1]
        assert all(r["latency_estimated"] for r in rows)
        assert all(r["errors"] == 0 for r in rows)
        assert sum(r["inference_count"] for r in rows) >= 3
        assert all(r["latency_us_mean"] >= 0 for r in rows)
