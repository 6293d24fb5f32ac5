"""Device telemetry: real inferences on the C engine through INFER frames, reported over MQTT."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.support.e2e_harness import e2e_env, wait_for
from tinyfleet.device.frames import Q16_ONE, TELEMETRY_CLASSES, ModelTelemetry
from tinyfleet.sim.agent import telemetry_report
from tinyfleet.sim.profiles import get_profile

pytestmark = pytest.mark.timeout(180)


@pytest.mark.slow  # measured > 3 s
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
        # The figures are the runtime's own (PROTOCOL 3.2.6): every inference is classified by its top-1,
        # the confidence is a dequantized softmax value, the latency an estimate from the op count.
        assert all(sum(r["class_histogram"]) == r["inference_count"] for r in rows)
        assert all(0 <= r["confidence_mean"] <= 1 for r in rows)  # clamped dequantized top-1
        assert all(r["latency_us_mean"] > 0 and r["arena_bytes"] > 0 for r in rows if r["inference_count"])
        # Queryable per model version through the summary API.
        summary = env.api.telemetry_summary(model_version_id=env.version_ids[0])
        assert summary["inference_count"] >= sum(r["inference_count"] for r in rows)
        assert sum(summary["class_histogram"]) == summary["inference_count"]
        assert summary["latency_estimated"] is True and summary["arena_bytes_max"] > 0
        assert 0 <= summary["confidence_mean"] <= 1
        other = env.api.telemetry_summary(model_version_id=env.version_ids[1])
        assert other["inference_count"] == 0 and other["latency_estimated"] is None


def _reading(inferences: int, hist: list[int], conf_q16: int, cycles: int, errors: int = 0) -> ModelTelemetry:
    return ModelTelemetry(
        latency_estimated=True,
        model_sha256="ab" * 32,
        inferences=inferences,
        errors=errors,
        classified=inferences,
        cpu_hz=1_000_000,
        arena_bytes=512,
        cycles_total=cycles,
        confidence_q16_total=conf_q16,
        histogram=tuple(hist + [0] * (TELEMETRY_CLASSES - len(hist))),
        histogram_other=0,
    )


def test_a_report_is_the_difference_between_two_runtime_readings() -> None:
    first = _reading(3, [1, 2], 3 * Q16_ONE // 2, 300)
    second = _reading(7, [2, 2, 3], 3 * Q16_ONE // 2 + 4 * Q16_ONE // 4, 1100, errors=1)
    report = telemetry_report(second, first)
    assert report["inference_count"] == 4 and report["errors"] == 1
    assert report["class_histogram"] == [1, 0, 3]
    assert report["confidence_mean"] == pytest.approx(0.25)
    assert report["latency_us_mean"] == pytest.approx(200.0)  # 800 cycles / 4 at 1 MHz
    assert report["latency_estimated"] is True and report["arena_bytes"] == 512
    whole = telemetry_report(second, None)  # after a model change or a reboot: everything counted
    assert whole["inference_count"] == 7 and whole["class_histogram"] == [2, 2, 3]
