"""Rollouts: create, inspect, and the operator commands start / pause / resume / abort / rollback."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Depends
from fastapi.responses import JSONResponse

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import DbId, get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import rollouts as rsvc
from tinyfleet.server.services.compatibility import Incompatible

router = APIRouter(tags=["rollouts"])

INCOMPATIBLE_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {"description": "targeted devices would refuse the package: `detail` and the `incompatible` table"}
}


def _incompatible(exc: Incompatible) -> JSONResponse:
    # Outside the session block: the transaction (a new rollout included) is rolled back.
    rows = [r.public() for r in exc.refusals]
    return JSONResponse({"detail": exc.message, "incompatible": rows}, status_code=409)


@router.post(
    "/rollouts", response_model=schemas.RolloutPublic, status_code=201, responses=INCOMPATIBLE_RESPONSE
)
def create_rollout(
    body: schemas.RolloutCreate, ctx: AppContext = Depends(get_ctx)
) -> schemas.RolloutPublic | JSONResponse:
    try:
        with ctx.session() as s:
            timeout = ctx.settings.action_timeout_seconds
            return views.rollout(s, rsvc.create(s, ctx, body, timeout, keys=ctx.keys))
    except Incompatible as exc:
        return _incompatible(exc)


@router.get("/rollouts", response_model=list[schemas.RolloutPublic])
def list_rollouts(
    state: schemas.RolloutState | None = None, ctx: AppContext = Depends(get_ctx)
) -> list[schemas.RolloutPublic]:
    with ctx.session() as s:
        return [views.rollout(s, r) for r in rsvc.list_rollouts(s, state)]


@router.get("/rollouts/{rollout_id}", response_model=schemas.RolloutPublic)
def get_rollout(rollout_id: DbId, ctx: AppContext = Depends(get_ctx)) -> schemas.RolloutPublic:
    with ctx.session() as s:
        return views.rollout(s, rsvc.get_rollout(s, rollout_id))


@router.get("/rollouts/{rollout_id}/actions", response_model=list[schemas.DeviceActionPublic])
def rollout_actions(
    rollout_id: DbId,
    purpose: Literal["deploy", "rollback"] | None = None,
    state: schemas.ActionState | None = None,
    ctx: AppContext = Depends(get_ctx),
) -> list[schemas.DeviceActionPublic]:
    with ctx.session() as s:
        rsvc.get_rollout(s, rollout_id)
        return [views.action(a) for a in rsvc.actions_of(s, rollout_id, purpose, state)]


@router.post(
    "/rollouts/{rollout_id}/{command}", response_model=schemas.RolloutPublic, responses=INCOMPATIBLE_RESPONSE
)
def command(
    rollout_id: DbId,
    command: rsvc.Command,
    body: schemas.RolloutCommand | None = Body(default=None),
    ctx: AppContext = Depends(get_ctx),
) -> schemas.RolloutPublic | JSONResponse:
    skip = body.skip_incompatible if body is not None else False
    try:
        with ctx.session() as s:
            rollout = rsvc.get_rollout(s, rollout_id)
            return views.rollout(s, rsvc.command(s, ctx, rollout, command, skip_incompatible=skip))
    except Incompatible as exc:
        return _incompatible(exc)
