"""The canary gate's statistics (tinyfleet/server/canary/stats.py) against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from tinyfleet.server.canary import stats

T = stats.Thresholds(
    min_inferences=500,
    min_devices=2,
    error_rate_max_increase=0.0,
    error_rate_alpha=0.05,
    latency_max_increase=0.10,
    confidence_max_drop=0.05,
    class_jsd_max=0.05,
)
UNIFORM = [10] * 16


def sample(devices=2, n=1000, errors=10, latency=1000.0, confidence=0.8, hist=None) -> stats.Sample:
    s = stats.Sample()
    hist = hist or [n // 16] * 16
    for _ in range(devices):
        s.add(n // devices, errors // devices, latency, confidence, [h // devices for h in hist])
    s.devices = devices
    return s


def test_normal_tail():
    assert stats.normal_sf(0.0) == pytest.approx(0.5)
    assert stats.normal_sf(1.6448536) == pytest.approx(0.05, abs=1e-7)
    assert stats.normal_sf(-1.959964) == pytest.approx(0.975, abs=1e-7)


def test_error_rate_z_test_known_values():
    # 3 % of 1000 against 1 % of 1000: se = sqrt(.03*.97/1000 + .01*.99/1000) = 0.0062450, z = 3.2026
    z, p = stats.error_rate_test(30, 1000, 10, 1000, 0.0)
    assert z == pytest.approx(3.20256, abs=1e-4) and p == pytest.approx(6.81e-4, rel=1e-2)
    # with a margin of 1 point the same data is weaker evidence: z = (0.02 - 0.01) / se = 1.6013
    z, p = stats.error_rate_test(30, 1000, 10, 1000, 0.01)
    assert z == pytest.approx(1.60128, abs=1e-4) and p == pytest.approx(0.05466, abs=1e-4)
    # no errors on either side: nothing to test, the difference decides
    assert stats.error_rate_test(0, 500, 0, 500, 0.0) == (-math.inf, 1.0)


def test_jensen_shannon_known_values():
    assert stats.jensen_shannon([5, 5], [50, 50]) == pytest.approx(0.0)
    assert stats.jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    # p = (.5, .5), q = (1, 0), m = (.75, .25): (KL(p||m) + KL(q||m)) / 2 = (0.2075187 + 0.4150375) / 2
    assert stats.jensen_shannon([1, 1], [1]) == pytest.approx(0.3112781, abs=1e-7)


def test_same_behaviour_passes_every_metric():
    out = stats.evaluate(sample(), sample(), T)
    assert {m: r["verdict"] for m, r in out.items()} == dict.fromkeys(stats.METRICS, "pass")
    assert out["error_rate"]["canary"] == pytest.approx(0.01) and out["latency"]["control"] == 1000.0
    assert out["error_rate"]["canary_samples"] == 1000 and out["error_rate"]["control_devices"] == 2


@pytest.mark.parametrize(
    ("metric", "canary"),
    [
        ("error_rate", sample(errors=40)),
        ("latency", sample(latency=1150.0)),
        ("confidence", sample(confidence=0.7)),
        ("class_distribution", sample(hist=[600] + [26] * 15)),
    ],
)
def test_each_metric_fails_on_its_own(metric, canary):
    out = stats.evaluate(canary, sample(), T)
    assert {m for m, r in out.items() if r["verdict"] == "fail"} == {metric}
    assert metric in stats.describe(metric, out[metric]).split()[0]


def test_small_differences_within_thresholds_pass():
    near = sample(errors=14, latency=1090.0, confidence=0.76, hist=[70] + [62] * 15)
    out = stats.evaluate(near, sample(), T)
    assert {r["verdict"] for r in out.values()} == {"pass"}, out


def test_minimum_samples_and_devices():
    few_inferences = stats.evaluate(sample(n=400, errors=4), sample(), T)
    assert {r["verdict"] for r in few_inferences.values()} == {"not_enough_data"}
    one_device = stats.evaluate(sample(devices=1), sample(), T)
    assert {r["verdict"] for r in one_device.values()} == {"not_enough_data"}
    empty_control = stats.evaluate(sample(), stats.Sample(), T)
    assert empty_control["latency"]["control"] is None
    assert "control 0 on 0" in stats.describe("latency", empty_control["latency"])
