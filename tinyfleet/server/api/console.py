"""The console's aggregated reads (one request per poll instead of one per table) and its assets.

`router` goes under /api with the token check like every API route; `assets` serves the page's files
(tinyfleet/server/dashboard) and the charting library from the installed `plotly` package, without a
token (they hold no data) and without any network access.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse
from sqlalchemy import String, cast
from sqlmodel import Session, col, func, select

from tinyfleet.server.api import telemetry, views
from tinyfleet.server.api.deps import DbId, get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import (
    Device,
    DeviceAction,
    HardwareClass,
    Model,
    ModelVersion,
    Package,
    PackageVariant,
    Rollout,
)
from tinyfleet.server.services import alerts as alertsvc
from tinyfleet.server.services import device_query as dq
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import registry, variants
from tinyfleet.server.services import rollouts as rsvc
from tinyfleet.signing.codes import error_name
from tinyfleet.signing.errors import InvalidModelError
from tinyfleet.signing.manifest import ENCODING_NAMES
from tinyfleet.signing.tflite import parse_model

router = APIRouter(tags=["console"])
assets = APIRouter(include_in_schema=False)

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"
ACTIVE_STATES = ("draft", "running", "paused", "rolling_back")
FAILING_SHOWN = 50  # failing devices listed by name; the count covers them all
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def _failing(session: Session, rollout_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Failed actions (newest first) with the runtime's error name, of one rollout or of open ones."""
    stmt = select(DeviceAction).where(col(DeviceAction.state).in_(dq.FAILED_STATES))
    if rollout_id is None:
        open_ids = select(Rollout.id).where(col(Rollout.state).in_(dq.OPEN_ROLLOUT_STATES))
        stmt = stmt.where(col(DeviceAction.rollout_id).in_(open_ids))
    else:
        stmt = stmt.where(DeviceAction.rollout_id == rollout_id)
    rows = session.exec(stmt.order_by(col(DeviceAction.updated_at).desc()).limit(limit))
    return [
        {
            "device_id": a.device_id,
            "rollout_id": a.rollout_id,
            "wave": a.wave,
            "purpose": a.purpose,
            "state": a.state,
            "error_code": a.error_code,
            "error_name": error_name(a.error_code) if a.error_code else a.state.upper(),
            "error": a.error,
            "updated_at": a.updated_at,
        }
        for a in rows
    ]


@router.get("/console/overview")
def overview(ctx: AppContext = Depends(get_ctx)) -> dict[str, Any]:
    """Everything the overview page shows, in one response: devices by active version, phase and
    presence, devices failing now, the rollouts still in the operator's hands, open alerts, and the
    gateway's counters (as GET /api/gateway/stats)."""
    with ctx.session() as s:
        active = [r for r in rsvc.list_rollouts(s) if r.state in ACTIVE_STATES]
        return {
            "now": time.time(),
            "devices": {
                "total": s.exec(select(func.count()).select_from(Device)).one(),
                **dq.online_counts(s),
                "by_version": dq.by_active_version(s),
                "by_phase": dq.by_phase(s),
                "failing": dq.failing_count(s),
            },
            "failing": _failing(s, None, FAILING_SHOWN),
            "rollouts": [views.rollout(s, r).model_dump() for r in active],
            "alerts": [alertsvc.public(a) for a in alertsvc.list_alerts(s, state="open", limit=100)],
            "gateway": telemetry.gateway_stats(ctx),
        }


@router.get("/console/rollouts/{rollout_id}")
def rollout_detail(rollout_id: DbId, ctx: AppContext = Depends(get_ctx)) -> dict[str, Any]:
    """A rollout page's poll: the rollout, per-wave progress, the soak countdown, failing devices."""
    with ctx.session() as s:
        r = rsvc.get_rollout(s, rollout_id)
        actions = rsvc.actions_of(s, rollout_id)
        waves = []
        for i, size in enumerate(r.wave_sizes):
            deploy = [a for a in actions if a.wave == i and a.purpose == "deploy"]
            waves.append({"wave": i, "size": size, **rsvc.counts(deploy)})
        now = time.time()
        soak = None
        if r.wave_passed_at is not None and r.state == "running":
            ends = r.wave_passed_at + r.soak_seconds
            soak = {"wave": r.current_wave, "ends_at": ends, "remaining": max(0.0, ends - now)}
        return {
            "now": now,
            "rollout": views.rollout(s, r).model_dump(),
            "waves": waves,
            "soak": soak,
            "failing": _failing(s, rollout_id, FAILING_SHOWN),
        }


@router.get("/console/devices/{device_id}")
def device_detail(device_id: str, ctx: AppContext = Depends(get_ctx)) -> dict[str, Any]:
    """A device page: the device, and its action history newest first with the runtime's error names."""
    with ctx.session() as s:
        d = devsvc.get_device(s, device_id)
        labels = dq.version_labels(s)
        history = sorted(devsvc.actions_of(s, device_id), key=lambda a: a.created_at, reverse=True)
        known = labels.get(d.active_model_sha256) if d.active_model_sha256 else None
        return {
            "device": views.device(d).model_dump(),
            "active_version": known[1] if known else None,
            "actions": [
                {
                    **views.action(a).model_dump(),
                    "error_name": error_name(a.error_code) if a.error_code else "",
                    "target_version": labels.get(a.target_model_sha256 or "", (None, None))[1],
                }
                for a in history
            ],
        }


_OPS: dict[str, tuple[str, ...]] = {}  # model digest -> its ops; a digest names immutable bytes


def _ops(s: Session, model_sha256: str) -> tuple[str, ...]:
    if model_sha256 not in _OPS:
        data = variants.model_bytes(s, model_sha256)
        try:
            ops = tuple(sorted(set(parse_model(data).operators))) if data is not None else ()
        except InvalidModelError:
            ops = ()
        _OPS[model_sha256] = ops
    return _OPS[model_sha256]


def _package(s: Session, p: Package) -> dict[str, Any]:
    rows = s.exec(select(PackageVariant).where(PackageVariant.source_package_id == p.id))
    return {
        **views.package(s, p).model_dump(),
        "encoding": ENCODING_NAMES.get(p.payload_encoding, "?"),
        "ops": list(_ops(s, p.model_sha256)),
        "variants": [
            {
                "encoding": ENCODING_NAMES.get(v.payload_encoding, "?"),
                "base_sha256": v.base_sha256,
                "status": v.status,
                "size": v.size,
                "error": v.error,
            }
            for v in rows
        ],
    }


@router.get("/console/models")
def models_detail(ctx: AppContext = Depends(get_ctx)) -> list[dict[str, Any]]:
    """The models page: every model, its versions, their packages with size, arena, ops and the payload
    variants built for them (compressed, deltas against older models)."""
    with ctx.session() as s:
        return [
            {
                "id": m.id,
                "name": m.name,
                "description": m.description,
                "versions": [
                    {
                        "id": mv.id,
                        "version": mv.version,
                        "notes": mv.notes,
                        "created_at": mv.created_at,
                        "packages": [_package(s, p) for p in registry.packages_of_version(s, mv.id or 0)],
                    }
                    for mv in registry.versions_of(s, m.id or 0)
                ],
            }
            for m in registry.list_models(s)
        ]


@router.get("/console/facets")
def facets(ctx: AppContext = Depends(get_ctx)) -> dict[str, Any]:
    """The values the device filters offer: groups, tags, hardware classes and model versions."""
    with ctx.session() as s:
        groups = s.exec(select(Device.group).where(col(Device.group).is_not(None)).distinct()).all()
        tags: set[str] = set()
        # distinct on the JSON text: PostgreSQL has no equality for the json type
        for text in s.exec(select(cast(col(Device.tags), String)).distinct()):
            tags.update(json.loads(text))
        classes = {hc.id: hc.name for hc in s.exec(select(HardwareClass))}
        for hw in s.exec(select(Device.hardware_class).distinct()):
            classes.setdefault(hw, "")
        # Every version, from its own table: two versions of the same model bytes (a re-upload, signed
        # by the server instead of offline) are both offered, which a digest-keyed map would merge.
        stmt = select(ModelVersion.id, Model.name, ModelVersion.version).join(
            Model, col(Model.id) == col(ModelVersion.model_id)
        )
        versions = sorted(((int(i or 0), f"{n} {v}") for i, n, v in s.exec(stmt)), key=lambda v: v[1])
        running = {e["model_version_id"]: e["devices"] for e in dq.by_active_version(s)}
        return {
            "groups": sorted(g for g in groups if g),
            "tags": sorted(tags),
            "hardware_classes": [{"id": k, "name": v} for k, v in sorted(classes.items())],
            "versions": [{"id": i, "label": label, "devices": running.get(i, 0)} for i, label in versions],
            "models": [{"id": m.id, "name": m.name} for m in registry.list_models(s)],
        }


@assets.get("/console/assets/plotly.min.js")
def plotly_js() -> FileResponse:
    # The charting library ships inside the `plotly` PyPI package: served from there, never a CDN.
    try:
        path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError as exc:
        raise HTTPException(status_code=404, detail="plotly is not installed (pip install plotly)") from exc
    if not path.is_file():
        raise HTTPException(status_code=404, detail=f"{path} is missing (reinstall plotly)")
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@assets.get("/console/{path:path}")
def console_file(path: str) -> FileResponse:
    """The page's own scripts and styles (no directory listing, nothing outside the dashboard folder)."""
    target = (DASHBOARD_DIR / path).resolve()
    if not target.is_relative_to(DASHBOARD_DIR) or not target.is_file() or target.suffix not in ASSET_TYPES:
        raise HTTPException(status_code=404, detail="no such console file")
    return FileResponse(target, media_type=ASSET_TYPES[target.suffix])
