"""Telemetry queries per device and per model version over a time window; gateway counters."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import MAX_DB_ID, OptDbIdQuery, get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import telemetry as telsvc
from tinyfleet.server.services import telemetry_stats as statsvc

router = APIRouter(tags=["telemetry"])


def _window(since: float | None, until: float | None) -> None:
    if since is not None and until is not None and until <= since:
        raise HTTPException(status_code=422, detail="until must be after since")


@router.get("/telemetry", response_model=list[schemas.TelemetryPublic])
def list_telemetry(
    device_id: str | None = None,
    model_version_id: OptDbIdQuery = None,
    since: float | None = Query(default=None, description="Unix seconds, inclusive"),
    until: float | None = Query(default=None, description="Unix seconds, exclusive"),
    limit: int = Query(default=500, ge=1, le=10000),
    ctx: AppContext = Depends(get_ctx),
) -> list[schemas.TelemetryPublic]:
    _window(since, until)
    with ctx.session() as s:
        if device_id is not None:
            devsvc.get_device(s, device_id)
        rows = telsvc.query(
            s, device_id=device_id, model_version_id=model_version_id, since=since, until=until, limit=limit
        )
        return [views.telemetry(r) for r in rows]


class TelemetrySummaryOut(schemas.TelemetrySummary):
    """The summary with the runtime telemetry's latency label and arena size (None: no reports)."""

    latency_estimated: bool | None = None
    arena_bytes_max: int | None = None


@router.get("/telemetry/summary", response_model=TelemetrySummaryOut)
def telemetry_summary(
    device_id: str | None = None,
    model_version_id: OptDbIdQuery = None,
    since: float | None = None,
    until: float | None = None,
    ctx: AppContext = Depends(get_ctx),
) -> TelemetrySummaryOut:
    _window(since, until)
    with ctx.session() as s:
        if device_id is not None:
            devsvc.get_device(s, device_id)
        rows = telsvc.query(
            s, device_id=device_id, model_version_id=model_version_id, since=since, until=until, limit=100000
        )
        return TelemetrySummaryOut(**telsvc.summarize(rows, since, until))


DEFAULT_WINDOW_S = 3600.0
# Far enough for any real window; bounded so that no bucket arithmetic overflows a database integer.
MAX_TS = 2**40
Metric = Literal["inferences", "errors", "error_rate", "latency", "confidence", "class_share"]
Resolution = Literal["raw", "1m", "5m", "1h"]
SinceQuery = Query(
    default=None, ge=0, le=MAX_TS, description="Unix seconds, inclusive (default: until - 1 h)"
)
UntilQuery = Query(default=None, ge=0, le=MAX_TS, description="Unix seconds, exclusive (default: now)")


def _default_window(since: float | None, until: float | None) -> tuple[float, float]:
    until = time.time() if until is None else until
    since = until - DEFAULT_WINDOW_S if since is None else since
    _window(since, until)
    return since, until


class SeriesPoint(BaseModel):
    t: float  # the report's ts (raw) or the bucket's start
    # the metric: a number (None where undefined, e.g. error_rate of 0 inferences) or, for class_share,
    # each class's share of the classified inferences
    value: float | list[float] | None
    reports: int
    inference_count: int
    errors: int
    device_id: str | None = None  # raw points only


class SeriesOut(BaseModel):
    metric: str
    resolution: str
    since: float  # the window covered: widened to whole buckets at 1m/5m/1h
    until: float
    points: list[SeriesPoint]


@router.get("/telemetry/series", response_model=SeriesOut)
def telemetry_series(
    metric: Metric,
    model_version_id: OptDbIdQuery = None,
    device_id: str | None = Query(default=None, max_length=64),
    resolution: Resolution = "1m",
    since: float | None = SinceQuery,
    until: float | None = UntilQuery,
    ctx: AppContext = Depends(get_ctx),
) -> SeriesOut:
    """One metric over time for a model version (from per-minute rollups) or a device (from its reports;
    with model_version_id too, only its reports of that version). Points only where there are reports;
    each carries the counts under it."""
    if model_version_id is None and device_id is None:
        raise HTTPException(status_code=422, detail="give model_version_id or device_id")
    since, until = _default_window(since, until)
    with ctx.session() as s:
        if device_id is not None:
            devsvc.get_device(s, device_id)
        points, window = statsvc.series(
            s, metric, resolution, since, until, model_version_id=model_version_id, device_id=device_id
        )
    return SeriesOut(
        metric=metric,
        resolution=resolution,
        since=window.since,
        until=window.until,
        points=[SeriesPoint(**p) for p in points],
    )


class VersionStats(BaseModel):
    model_version_id: int
    reports: int
    inference_count: int
    errors: int
    error_rate: float | None
    latency_us_mean: float | None
    latency_estimated: bool | None
    confidence_mean: float | None
    class_histogram: list[int]
    class_distribution: list[float]


class CompareOut(BaseModel):
    since: float  # the window both versions are summed over, widened to whole minutes
    until: float
    a: VersionStats
    b: VersionStats
    # Jensen-Shannon divergence (base 2, 0..1) of the class distributions; None if either has none
    js_divergence: float | None


@router.get(
    "/telemetry/compare",
    response_model=CompareOut,
    responses={404: {"description": "version a or b does not exist"}},
)
def telemetry_compare(
    a: int = Query(ge=0, le=MAX_DB_ID, description="a model version id"),
    b: int = Query(ge=0, le=MAX_DB_ID, description="another model version id"),
    since: float | None = SinceQuery,
    until: float | None = UntilQuery,
    ctx: AppContext = Depends(get_ctx),
) -> CompareOut:
    """Two model versions' telemetry over the same window, and how far apart their class distributions are."""
    since, until = _default_window(since, until)
    with ctx.session() as s:
        return CompareOut(**statsvc.compare(s, a, b, since, until))


@router.get("/gateway/stats", tags=["gateway"])
def gateway_stats(ctx: AppContext = Depends(get_ctx)) -> dict[str, Any]:
    """Messages received per kind, malformed payloads per kind, and other gateway events."""
    snap: dict[str, Any] = dict(ctx.stats.snapshot())
    snap["connected"] = bool(ctx.gateway and ctx.gateway.connected.is_set())
    snap["rollout_ticks"] = ctx.rollout_driver.ticks
    snap["rollout_last_error"] = ctx.rollout_driver.last_error
    snap["broker_reloads"] = ctx.broker_reloader.reloads
    snap["broker_reload_error"] = ctx.broker_reloader.last_error
    return snap


@router.get("/trust-store", response_model=list[schemas.TrustedKeyPublic], tags=["devices"])
def trust_store(ctx: AppContext = Depends(get_ctx)) -> list[schemas.TrustedKeyPublic]:
    """The public keys devices must trust (the server key and any offline release keys)."""
    return views.trust_store(ctx)
