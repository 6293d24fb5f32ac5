"""Pure statistics of the canary gate: per-metric verdicts from two telemetry samples (no database).

Each metric compares the canary sample with the control sample and gives `pass`, `fail` or
`not_enough_data` (either side below the minimum inferences or devices). Means are weighted by the
inferences behind them, so a device that reports often or runs fast counts for its inferences, not
for its reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PASS, FAIL, NOT_ENOUGH_DATA = "pass", "fail", "not_enough_data"
METRICS = ("error_rate", "latency", "confidence", "class_distribution")


@dataclass
class Sample:
    """Telemetry of one side (canary or control) summed over a window."""

    inferences: int = 0
    errors: int = 0
    devices: int = 0
    latency_sum: float = 0.0  # latency_us_mean x inference_count, summed
    classified: int = 0  # inferences with a top-1 class in the histogram (confidence weight)
    confidence_sum: float = 0.0  # confidence_mean x classified, summed
    histogram: list[int] = field(default_factory=list)

    def add(
        self, inferences: int, errors: int, latency_us_mean: float, confidence_mean: float, hist: list[int]
    ) -> None:
        self.inferences += inferences
        self.errors += errors
        self.latency_sum += latency_us_mean * inferences
        # The device's confidence mean is over its classified inferences (PROTOCOL 4.5); an old device
        # without a histogram is weighted by its inferences.
        weight = sum(hist) or inferences
        self.classified += weight
        self.confidence_sum += confidence_mean * weight
        if len(hist) > len(self.histogram):
            self.histogram += [0] * (len(hist) - len(self.histogram))
        for i, v in enumerate(hist):
            self.histogram[i] += v

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.inferences if self.inferences else None

    @property
    def latency_us(self) -> float | None:
        return self.latency_sum / self.inferences if self.inferences else None

    @property
    def confidence(self) -> float | None:
        return self.confidence_sum / self.classified if self.classified else None


@dataclass(frozen=True)
class Thresholds:
    min_inferences: int
    min_devices: int
    error_rate_max_increase: float  # absolute, e.g. 0.01 = one percentage point
    error_rate_alpha: float  # significance of the one-sided test
    latency_max_increase: float  # relative, e.g. 0.1 = 10 % slower
    confidence_max_drop: float  # absolute, on 0..1
    class_jsd_max: float  # Jensen-Shannon divergence, base 2 (0..1)


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def error_rate_test(errors_c: int, n_c: int, errors_b: int, n_b: int, margin: float) -> tuple[float, float]:
    """One-sided two-proportion z-test of H1: p_canary - p_control > margin. Returns (z, p-value).

    The standard error is unpooled (Wald): pooling assumes equal proportions, which a non-zero margin
    says they need not be. With no spread on either side (both 0 % or both 100 %) the difference
    itself decides."""
    p_c, p_b = errors_c / n_c, errors_b / n_b
    diff = p_c - p_b - margin
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_b * (1 - p_b) / n_b)
    if se == 0.0:
        return (math.inf, 0.0) if diff > 0 else (-math.inf, 1.0)
    z = diff / se
    return z, normal_sf(z)


def jensen_shannon(p_counts: list[int], q_counts: list[int]) -> float:
    """Jensen-Shannon divergence (base 2, in 0..1) of two histograms, normalised; the shorter is padded
    with zeros (devices drop trailing zero classes)."""
    n = max(len(p_counts), len(q_counts))
    p = np.zeros(n)
    q = np.zeros(n)
    p[: len(p_counts)] = p_counts
    q[: len(q_counts)] = q_counts
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        mask = a > 0  # 0 log 0 = 0; m > 0 wherever a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def _result(
    verdict: str,
    canary: float | None,
    control: float | None,
    threshold: float,
    c: Sample,
    b: Sample,
    n_c: int,
    n_b: int,
) -> dict[str, Any]:
    return {
        "verdict": verdict,
        "canary": canary,
        "control": control,
        "threshold": threshold,
        "canary_samples": n_c,
        "control_samples": n_b,
        "canary_devices": c.devices,
        "control_devices": b.devices,
    }


def _enough(t: Thresholds, c: Sample, b: Sample, n_c: int, n_b: int) -> bool:
    return min(n_c, n_b) >= t.min_inferences and min(c.devices, b.devices) >= t.min_devices


def evaluate(canary: Sample, control: Sample, t: Thresholds) -> dict[str, dict[str, Any]]:
    """Every metric's verdict and the numbers behind it, keyed by metric name (METRICS)."""
    c, b = canary, control
    out: dict[str, dict[str, Any]] = {}

    enough = _enough(t, c, b, c.inferences, b.inferences)
    err = _result(
        NOT_ENOUGH_DATA,
        c.error_rate,
        b.error_rate,
        t.error_rate_max_increase,
        c,
        b,
        c.inferences,
        b.inferences,
    )
    if enough:
        z, p = error_rate_test(c.errors, c.inferences, b.errors, b.inferences, t.error_rate_max_increase)
        err.update(
            verdict=FAIL if p < t.error_rate_alpha else PASS, z=z if math.isfinite(z) else None, p_value=p
        )
    out["error_rate"] = err

    lat = _result(
        NOT_ENOUGH_DATA, c.latency_us, b.latency_us, t.latency_max_increase, c, b, c.inferences, b.inferences
    )
    if enough and c.latency_us is not None and b.latency_us is not None:
        increase = (
            c.latency_us / b.latency_us - 1 if b.latency_us > 0 else (math.inf if c.latency_us > 0 else 0.0)
        )
        lat.update(
            verdict=FAIL if increase > t.latency_max_increase else PASS,
            change=increase if math.isfinite(increase) else None,
        )
    out["latency"] = lat

    conf = _result(
        NOT_ENOUGH_DATA, c.confidence, b.confidence, t.confidence_max_drop, c, b, c.classified, b.classified
    )
    if _enough(t, c, b, c.classified, b.classified) and c.confidence is not None and b.confidence is not None:
        drop = b.confidence - c.confidence
        conf.update(verdict=FAIL if drop > t.confidence_max_drop else PASS, change=-drop)
    out["confidence"] = conf

    n_c, n_b = sum(c.histogram), sum(b.histogram)
    dist = _result(NOT_ENOUGH_DATA, None, None, t.class_jsd_max, c, b, n_c, n_b)
    if _enough(t, c, b, n_c, n_b):
        jsd = jensen_shannon(c.histogram, b.histogram)
        dist.update(verdict=FAIL if jsd > t.class_jsd_max else PASS, canary=jsd)
    out["class_distribution"] = dist
    return out


def describe(metric: str, r: dict[str, Any]) -> str:
    """One metric's numbers for a state_reason, e.g. "error_rate 4.10% vs 1.00% (max +1.00 pp, p=0.0003)"."""
    c, b, t = r["canary"], r["control"], r["threshold"]
    if r["verdict"] == NOT_ENOUGH_DATA:
        return (
            f"{metric}: canary {r['canary_samples']} samples on {r['canary_devices']} device(s),"
            f" control {r['control_samples']} on {r['control_devices']}"
        )
    if metric == "error_rate":
        return f"error_rate {100 * c:.2f}% vs {100 * b:.2f}% (max +{100 * t:.2f} pp, p={r['p_value']:.2g})"
    if metric == "latency":
        return f"latency {c:.0f} us vs {b:.0f} us (max +{100 * t:.0f}%)"
    if metric == "confidence":
        return f"confidence {c:.3f} vs {b:.3f} (max drop {t:.3f})"
    return f"class_distribution JSD {c:.4f} (max {t:.4f})"
