"""Telemetry queries per device and per model version over a time window; gateway counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import OptDbIdQuery, get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import telemetry as telsvc

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
