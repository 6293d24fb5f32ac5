"""Devices: provisioning (returns id, MQTT credentials, trust store), labels, state, actions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response
from sqlmodel import col, select

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import OptU32Query, get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import Device, DeviceAction
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import registry

router = APIRouter(tags=["devices"])


def _provision_result(ctx: AppContext, device: Device, password: str, chunk: int) -> schemas.ProvisionResult:
    url = ctx.device_mqtt()
    return schemas.ProvisionResult(
        device=views.device(device),
        mqtt=schemas.MqttCredentials(
            host=url.host if url else None,
            port=url.port if url else None,
            tls=url.tls if url else False,
            username=device.id,
            password=password,
            topic_prefix=f"tf/{device.id}/",
        ),
        trust_store=[schemas.TrustedKeyPublic(**k) for k in ctx.keys.public_keys()],
        chunk_size=chunk,
    )


@router.post("/devices", response_model=schemas.ProvisionResult, status_code=201)
def provision(body: schemas.DeviceCreate, ctx: AppContext = Depends(get_ctx)) -> schemas.ProvisionResult:
    with ctx.session() as s:
        device, password = devsvc.provision(
            s,
            device_id=body.id,
            name=body.name,
            hardware_class=body.hardware_class,
            group=body.group,
            tags=body.tags,
        )
        chunk = registry.chunk_size_for(s, device.hardware_class, ctx.settings.default_chunk_size)
    ctx.add_password_entry(device.id, device.mqtt_password_hash)
    ctx.engine.wake()
    return _provision_result(ctx, device, password, chunk)


@router.post("/devices/{device_id}/credentials", response_model=schemas.ProvisionResult)
def rotate_credentials(device_id: str, ctx: AppContext = Depends(get_ctx)) -> schemas.ProvisionResult:
    with ctx.session() as s:
        device = devsvc.get_device(s, device_id)
        password = devsvc.rotate_password(s, device)
        chunk = registry.chunk_size_for(s, device.hardware_class, ctx.settings.default_chunk_size)
    ctx.sync_password_file()
    return _provision_result(ctx, device, password, chunk)


@router.get("/devices", response_model=list[schemas.DevicePublic])
def list_devices(
    group: str | None = None,
    tag: str | None = None,
    hardware_class: OptU32Query = None,
    online: bool | None = None,
    limit: int | None = Query(default=None, ge=1, le=100000, description="page size (default: all)"),
    offset: int = Query(default=0, ge=0, le=10**9),
    ctx: AppContext = Depends(get_ctx),
) -> list[schemas.DevicePublic]:
    with ctx.session() as s:
        rows = devsvc.list_devices(s, group=group, tag=tag, hardware_class=hardware_class, online=online)
        page = rows[offset : None if limit is None else offset + limit]
        return [views.device(d) for d in page]


@router.get("/devices/{device_id}", response_model=schemas.DevicePublic)
def get_device(device_id: str, ctx: AppContext = Depends(get_ctx)) -> schemas.DevicePublic:
    with ctx.session() as s:
        return views.device(devsvc.get_device(s, device_id))


@router.patch("/devices/{device_id}", response_model=schemas.DevicePublic)
def update_device(
    device_id: str, body: schemas.DeviceUpdate, ctx: AppContext = Depends(get_ctx)
) -> schemas.DevicePublic:
    with ctx.session() as s:
        device = devsvc.update_labels(
            s,
            devsvc.get_device(s, device_id),
            name=body.name,
            group=body.group,
            clear_group=body.clear_group,
            tags=body.tags,
        )
        result = views.device(device)
    ctx.engine.wake()
    return result


@router.delete("/devices/{device_id}", status_code=204)
def delete_device(device_id: str, ctx: AppContext = Depends(get_ctx)) -> Response:
    with ctx.session() as s:
        devsvc.delete_device(s, devsvc.get_device(s, device_id))
    ctx.messages.forget_device(device_id)
    ctx.sync_password_file()
    return Response(status_code=204)


@router.get("/devices/{device_id}/actions", response_model=list[schemas.DeviceActionPublic])
def device_actions(device_id: str, ctx: AppContext = Depends(get_ctx)) -> list[schemas.DeviceActionPublic]:
    with ctx.session() as s:
        devsvc.get_device(s, device_id)
        stmt = select(DeviceAction).where(DeviceAction.device_id == device_id)
        return [views.action(a) for a in s.exec(stmt.order_by(col(DeviceAction.created_at)))]
