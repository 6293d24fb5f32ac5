"""The main job (`tinyfleet demo`) end to end, with a smaller fleet: v1 to all, v2 in three waves through
a canary gate, the bad v3 stopped by its failure threshold and rolled back, and (with TensorFlow) the
silently wrong v4 confirmed by its canaries but failed by the gate on telemetry and rolled back, every
device ending on v2."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from tinyfleet.demo import DemoOptions, run_demo
from tinyfleet.demo_models import SHARED_PAIRS, pipeline_available
from tinyfleet.server.devbroker import BrokerError, find_mosquitto

pytestmark = pytest.mark.timeout(300)


def test_demo_rolls_out_v1_v2_and_rolls_back_bad_v3() -> None:
    try:
        find_mosquitto()
    except BrokerError as exc:
        pytest.skip(str(exc))
    if not pipeline_available() and not (SHARED_PAIRS / "hello_world_int8.0.tflite").is_file():
        pytest.skip(f"real models not found at {SHARED_PAIRS}")
    out = io.StringIO()
    report = run_demo(DemoOptions(devices=20, processes=1), Console(file=out, width=120))
    expected = {"v1": "completed", "v2": "completed", "v3-bad": "rolled_back"}
    if pipeline_available():
        expected["v4-wrong"] = "rolled_back"
    assert report.rollout_states == expected, out.getvalue()
    assert report.final_versions == {"2.0.0": 20}
    v1 = [w for w in report.waves if w.rollout == "v1"]
    v2 = [w for w in report.waves if w.rollout == "v2"]
    v3 = [w for w in report.waves if w.rollout == "v3-bad"]
    assert sum(w.confirmed for w in v1) == 20 and sum(w.confirmed for w in v2) == 20
    assert [w.devices for w in v2] == [2, 6, 12]
    # v2 went to devices running v1 as a delta: far fewer bytes per device than v1's whole model.
    if pipeline_available():
        v1_per_device = sum(w.bytes_sent for w in v1) / 20
        v2_per_device = sum(w.bytes_sent for w in v2) / 20
        assert 0 < v2_per_device < 0.8 * v1_per_device, (v1_per_device, v2_per_device)
    # The bad release failed on devices of the first wave (trial self-test) and went no further.
    assert v3[0].failed >= 1 and v3[0].confirmed == 0
    assert all(w.confirmed == 0 and w.bytes_sent == 0 for w in v3[1:] if w.wave != "rollback")
    assert "failure threshold reached" in out.getvalue()
    # ...for the right reason: the runtime's trial self-test, not a download or signature problem.
    assert "SELFTEST_FAILED (42)" in out.getvalue()
    # Per-version inference telemetry from the server: the runtime's counters, reported by the agents.
    v2_tel = report.telemetry["2.0.0"]
    assert v2_tel["inference_count"] > 0 and v2_tel["errors"] == 0, report.telemetry
    assert sum(v2_tel["class_histogram"]) == v2_tel["inference_count"]
    assert v2_tel["latency_estimated"] is True and v2_tel["latency_us_mean"] > 0
    assert 0 <= v2_tel["confidence_mean"] <= 1
    assert report.telemetry["3.0.0"]["inference_count"] == 0  # v3 never ran outside its failed trial
    assert "inference telemetry per version" in out.getvalue() and " est." in out.getvalue()
    if not pipeline_available():
        assert "canary gate part skipped" in out.getvalue()
        return
    # The same gate: v2's waves pass it; v4 confirms on its canaries, fails it on confidence, goes back.
    assert [g["verdict"] for g in report.gates["v2"]] == ["pass", "pass"], report.gates
    (gate,) = report.gates["v4-wrong"]
    assert gate["verdict"] == "fail", gate
    conf = gate["metrics"]["confidence"]
    assert conf["verdict"] == "fail" and conf["canary"] < conf["control"] - 0.1, conf
    v4 = [w for w in report.waves if w.rollout == "v4-wrong"]
    # Downloaded and installed on both canaries without an error (the rollback may since have stood the
    # actions down: "stopped"), then reverted by the rollback.
    assert v4[0].confirmed + v4[0].cancelled == 2 and v4[0].failed == 0 and v4[0].bytes_sent > 0
    assert [w.wave for w in v4][-1] == "rollback" and v4[-1].confirmed == 2
    text = out.getvalue()
    assert "canary gate wave 1 failed: confidence" in text
    assert "confidence         FAIL: canary" in text and "vs control" in text
