"""Rollouts: create, inspect, and the operator commands start / pause / resume / abort / rollback."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import DbId, get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import rollouts as rsvc

router = APIRouter(tags=["rollouts"])


@router.post("/rollouts", response_model=schemas.RolloutPublic, status_code=201)
def create_rollout(body: schemas.RolloutCreate, ctx: AppContext = Depends(get_ctx)) -> schemas.RolloutPublic:
    with ctx.session() as s:
        return views.rollout(s, rsvc.create(s, ctx, body, ctx.settings.action_timeout_seconds))


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


@router.post("/rollouts/{rollout_id}/{command}", response_model=schemas.RolloutPublic)
def command(
    rollout_id: DbId,
    command: rsvc.Command,
    ctx: AppContext = Depends(get_ctx),
) -> schemas.RolloutPublic:
    with ctx.session() as s:
        return views.rollout(s, rsvc.command(s, ctx, rsvc.get_rollout(s, rollout_id), command))
