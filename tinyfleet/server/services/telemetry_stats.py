"""Telemetry over time: series per model version or device at a resolution, aggregates over a window
(`window_stats`, what a canary gate compares) and the comparison of two versions.

Per-version figures come from the per-minute rollups (services/rollups.py), so their windows are
widened to whole minutes (or whole buckets of the resolution); per-device figures and raw series come
from the stored reports, exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from tinyfleet.server.models import TelemetryReport
from tinyfleet.server.services import rollups
from tinyfleet.server.services.errors import Invalid
from tinyfleet.server.services.rollups import Stats
from tinyfleet.server.services.telemetry import shas_of_version

METRICS = ("inferences", "errors", "error_rate", "latency", "confidence", "class_share")
RESOLUTIONS = {"raw": 0, "1m": 60, "5m": 300, "1h": 3600}
MAX_POINTS = 10_000


@dataclass(frozen=True)
class Window:
    """[since, until) in Unix seconds, as actually covered (widened to whole buckets for rollups)."""

    since: float
    until: float


def align(since: float, until: float, step: int) -> tuple[int, int]:
    """The smallest [start, end) of whole `step`-second buckets covering [since, until)."""
    return math.floor(since / step) * step, math.ceil(until / step) * step


def _raw(
    session: Session,
    since: float,
    until: float,
    *,
    shas: set[str] | None = None,
    device_ids: list[str] | None = None,
    limit: int | None = None,
) -> list[TelemetryReport]:
    stmt = select(TelemetryReport).where(TelemetryReport.ts >= since, TelemetryReport.ts < until)
    if shas is not None:
        stmt = stmt.where(col(TelemetryReport.model_sha256).in_(shas))
    if device_ids is not None:
        stmt = stmt.where(col(TelemetryReport.device_id).in_(device_ids))
    stmt = stmt.order_by(col(TelemetryReport.ts), col(TelemetryReport.id))
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.exec(stmt))


def window_stats(
    session: Session,
    since: float,
    until: float,
    *,
    model_version_id: int | None = None,
    shas: set[str] | None = None,
    device_ids: list[str] | None = None,
) -> tuple[Stats, Window]:
    """Telemetry summed over [since, until) for some devices (from the raw reports: exact; with a version
    too, only their reports of it) or for a model version or digests (from the rollups: the window widened
    to whole minutes). Returns the Stats and the window they cover. NotFound for an unknown version."""
    if model_version_id is not None:
        shas = (shas or set()) | shas_of_version(session, model_version_id)
    stats = Stats()
    if device_ids is not None:
        for r in _raw(session, since, until, shas=shas, device_ids=device_ids):
            stats.add_report(r)
        return stats, Window(since, until)
    if shas is None:
        raise ValueError("window_stats needs device_ids, model_version_id or shas")
    start, end = align(since, until, rollups.MINUTE)
    for row in rollups.rollups(session, shas, start, end):
        stats.add_rollup(row)
    return stats, Window(start, end)


def _value(stats: Stats, metric: str) -> Any:
    if metric == "inferences":
        return stats.inference_count
    if metric == "errors":
        return stats.errors
    if metric == "error_rate":
        return stats.error_rate
    if metric == "latency":
        return stats.latency_us_mean
    if metric == "confidence":
        return stats.confidence_mean
    return stats.class_distribution


def _point(t: float, stats: Stats, metric: str, device_id: str | None = None) -> dict[str, Any]:
    point = {
        "t": t,
        "value": _value(stats, metric),
        "reports": stats.reports,
        "inference_count": stats.inference_count,
        "errors": stats.errors,
    }
    if device_id is not None:
        point["device_id"] = device_id
    return point


def series(
    session: Session,
    metric: str,
    resolution: str,
    since: float,
    until: float,
    *,
    model_version_id: int | None = None,
    device_id: str | None = None,
) -> tuple[list[dict[str, Any]], Window]:
    """Points oldest first, only where there are reports: at "raw" one per report (`t` its ts), else one
    per bucket (`t` its start). Each point carries the counts under it, so points sum to the window's
    totals. A device's series (with a version too: only its reports of it) comes from the raw reports,
    a version's from the rollups. Invalid (422) above MAX_POINTS points."""
    step = RESOLUTIONS[resolution]
    shas = shas_of_version(session, model_version_id) if model_version_id is not None else None
    devices = [device_id] if device_id is not None else None
    if step == 0:
        rows = _raw(session, since, until, shas=shas, device_ids=devices, limit=MAX_POINTS + 1)
        if len(rows) > MAX_POINTS:
            raise Invalid(f"more than {MAX_POINTS} raw reports in the window; narrow it or use resolution=1m")
        points = []
        for r in rows:
            one = Stats()
            one.add_report(r)
            points.append(_point(r.ts, one, metric, r.device_id))
        return points, Window(since, until)
    start, end = align(since, until, step)
    if (end - start) // step > MAX_POINTS:
        raise Invalid(f"more than {MAX_POINTS} points of {resolution}; narrow the window or coarsen it")
    buckets: dict[int, Stats] = {}
    if devices is not None:
        for r in _raw(session, start, end, shas=shas, device_ids=devices):
            buckets.setdefault(math.floor(r.ts / step) * step, Stats()).add_report(r)
    else:
        for row in rollups.rollups(session, shas or set(), start, end):
            buckets.setdefault(row.minute // step * step, Stats()).add_rollup(row)
    return [_point(t, buckets[t], metric) for t in sorted(buckets)], Window(start, end)


def js_divergence(p: list[float], q: list[float]) -> float | None:
    """Jensen-Shannon divergence (base 2: 0 same, 1 disjoint) of two class distributions; the shorter
    one is padded with zeros. None when either is empty (nothing classified)."""
    if not p or not q:
        return None
    n = max(len(p), len(q))
    p = p + [0.0] * (n - len(p))
    q = q + [0.0] * (n - len(q))
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(x: list[float]) -> float:
        return sum(a * math.log2(a / c) for a, c in zip(x, m, strict=True) if a > 0)

    return min(1.0, max(0.0, (kl(p) + kl(q)) / 2))


def compare(session: Session, a: int, b: int, since: float, until: float) -> dict[str, Any]:
    """Two model versions' telemetry over the same window (from the rollups) and the JS divergence
    between their class distributions. NotFound for an unknown version."""
    sa, window = window_stats(session, since, until, model_version_id=a)
    sb, _ = window_stats(session, since, until, model_version_id=b)
    return {
        "since": window.since,
        "until": window.until,
        "a": {"model_version_id": a, **sa.as_dict()},
        "b": {"model_version_id": b, **sb.as_dict()},
        "js_divergence": js_divergence(sa.class_distribution, sb.class_distribution),
    }
