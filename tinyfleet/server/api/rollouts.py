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
        data = body.model_dump(exclude={"start"})
        data["waves"] = [{k: v for k, v in w.items() if v is not None} for w in data["waves"]]
        data["failure_threshold"] = {k: v for k, v in data["failure_threshold"].items() if v is not None}
        rollout = rsvc.create(s, data, ctx.settings.action_timeout_seconds)
        if body.start:
            rsvc.start(s, rollout)
        result = views.rollout(s, rollout)
    if body.start:
        ctx.prepare_rollout(result.id)
    ctx.engine.wake()
    return result


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
        rows = rsvc.actions_of(s, rollout_id, purpose)
        return [views.action(a) for a in rows if state is None or a.state == state]


@router.post("/rollouts/{rollout_id}/{command}", response_model=schemas.RolloutPublic)
def command(
    rollout_id: DbId,
    command: Literal["start", "pause", "resume", "abort", "rollback"],
    ctx: AppContext = Depends(get_ctx),
) -> schemas.RolloutPublic:
    publish = []
    with ctx.session() as s:
        rollout = rsvc.get_rollout(s, rollout_id)
        if command == "start":
            rsvc.start(s, rollout)
        elif command == "pause":
            rsvc.pause(s, rollout)
        elif command == "resume":
            rsvc.resume(s, rollout)
        elif command == "abort":
            publish = rsvc.abort(s, rollout)
        else:
            rsvc.request_rollback(s, rollout)
        result = views.rollout(s, rollout)
    if command == "start":
        ctx.prepare_rollout(rollout_id)
    if ctx.engine.publisher is not None:
        for device_id, doc in publish:
            ctx.engine.publisher.publish_desired(device_id, doc)
    ctx.engine.wake()
    return result
