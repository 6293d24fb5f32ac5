"""Alerts (drift alarms, services/drift.py): listed newest first."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from tinyfleet.server.api.deps import OptDbIdQuery, get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import alerts as alertsvc

router = APIRouter(tags=["alerts"])


class AlertPublic(BaseModel):
    id: int
    kind: str
    model_version_id: int
    state: Literal["open", "resolved"]
    opened_at: float
    last_seen_at: float
    resolved_at: float | None
    numbers: dict[str, Any]
    message: str


@router.get("/alerts", response_model=list[AlertPublic])
def list_alerts(
    state: Literal["open", "resolved"] | None = None,
    model_version_id: OptDbIdQuery = None,
    limit: int = Query(default=500, ge=1, le=10000),
    ctx: AppContext = Depends(get_ctx),
) -> list[AlertPublic]:
    with ctx.session() as s:
        rows = alertsvc.list_alerts(s, state=state, model_version_id=model_version_id, limit=limit)
        return [AlertPublic(**alertsvc.public(a)) for a in rows]
