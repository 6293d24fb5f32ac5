"""Devices: provisioning (returns id, MQTT credentials, trust store), labels, state, actions."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Response

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import OptDbIdQuery, OptU32Query, get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import device_certs as certsvc
from tinyfleet.server.services import device_query, registry
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services import encrypted as encsvc

router = APIRouter(tags=["devices"])
SORT_PATTERN = "^-?(" + "|".join(device_query.SORT_KEYS) + ")$"


@router.post("/devices", response_model=schemas.ProvisionResult, status_code=201)
def provision(body: schemas.DeviceCreate, ctx: AppContext = Depends(get_ctx)) -> schemas.ProvisionResult:
    with ctx.session() as s:
        made = certsvc.provision(s, ctx, body)  # a password, or a certificate in cert mode
        device = devsvc.get_device(s, made.device_id)
        return views.provisioned(s, ctx, device, made.password, made.cert, made.encryption_key)


@router.post("/devices/bulk", response_model=schemas.BulkProvisionResult, status_code=201)
def provision_bulk(
    body: schemas.DeviceBulkCreate, ctx: AppContext = Depends(get_ctx)
) -> schemas.BulkProvisionResult:
    """Up to 10,000 devices in one transaction, all or none (409 names the ids that exist already). The
    answer is JSON with what all devices share (broker, trust store) given once: ~100 bytes a device."""
    with ctx.session() as s:
        created = certsvc.provision_bulk(s, ctx, body.device_list())
        classes = {d.hardware_class for d in created}
        default = ctx.settings.default_chunk_size
        chunk = {hw: registry.chunk_size_for(s, hw, default) for hw in classes}
    url = ctx.device_mqtt()
    return schemas.BulkProvisionResult(
        count=len(created),
        mqtt=schemas.BulkMqtt(
            host=url.host if url else None, port=url.port if url else None, tls=bool(url and url.tls)
        ),
        trust_store=views.trust_store(ctx),
        devices=[
            schemas.BulkDeviceCredentials(
                id=d.device_id,
                hardware_class=d.hardware_class,
                password=d.password,
                chunk_size=chunk[d.hardware_class],
                certificate_pem=d.cert.cert_pem if d.cert else None,
                private_key_pem=d.cert.key_pem if d.cert else None,
                encryption_key=d.encryption_key or None,
            )
            for d in created
        ],
        ca_pem=ctx.fleet_ca.cert_pem if ctx.fleet_ca is not None else None,
    )


@router.post("/devices/{device_id}/credentials", response_model=schemas.ProvisionResult)
def rotate_credentials(device_id: str, ctx: AppContext = Depends(get_ctx)) -> schemas.ProvisionResult:
    with ctx.session() as s:
        device = devsvc.get_device(s, device_id)
        password = devsvc.rotate_password(s, ctx, device)
        return views.provisioned(s, ctx, device, password)


@router.post("/devices/{device_id}/encryption-key", response_model=schemas.EncryptionKeyIssued)
def new_encryption_key(device_id: str, ctx: AppContext = Depends(get_ctx)) -> schemas.EncryptionKeyIssued:
    """A new X25519 key pair for encrypted rollouts (a device provisioned before device keys, or one
    whose key was lost); the old key's cached content-key wraps are dropped."""
    with ctx.session() as s:
        device = devsvc.get_device(s, device_id)
        private = encsvc.reissue_device_key(s, device)
        return schemas.EncryptionKeyIssued(
            device_id=device.id,
            encryption_key=private,
            encryption_public_key=device.encryption_public_key or "",
        )


@router.get("/devices", response_model=list[schemas.DevicePublic])
def list_devices(
    response: Response,
    group: str | None = None,
    tag: str | None = None,
    hardware_class: OptU32Query = None,
    online: bool | None = None,
    limit: int | None = Query(default=None, ge=1, le=100000, description="page size (default: all)"),
    offset: int = Query(default=0, ge=0, le=10**9, description="devices skipped, in sort order"),
    q: str | None = Query(default=None, max_length=64, description="substring of the id or name, any case"),
    model_version_id: OptDbIdQuery = None,
    failing: bool | None = Query(default=None, description="has a failed action in an open rollout"),
    sort: str = Query(default="id", pattern=SORT_PATTERN, description="a field, '-' first for descending"),
    ctx: AppContext = Depends(get_ctx),
) -> list[schemas.DevicePublic]:
    """Matching devices, one page of them; the X-Total-Count header says how many match in all."""
    f = device_query.DeviceFilter(q, group, tag, hardware_class, model_version_id, online, failing)
    with ctx.session() as s:
        rows, total = device_query.search(s, f, sort, limit, offset)
        response.headers["X-Total-Count"] = str(total)
        return [views.device(d) for d in rows]


@router.get("/devices/{device_id}", response_model=schemas.DevicePublic)
def get_device(device_id: str, ctx: AppContext = Depends(get_ctx)) -> schemas.DevicePublic:
    with ctx.session() as s:
        return views.device(devsvc.get_device(s, device_id))


@router.patch("/devices/{device_id}", response_model=schemas.DevicePublic)
def update_device(
    device_id: str, body: schemas.DeviceUpdate, ctx: AppContext = Depends(get_ctx)
) -> schemas.DevicePublic:
    with ctx.session() as s:
        return views.device(devsvc.update_labels(s, ctx, devsvc.get_device(s, device_id), body))


@router.delete("/devices/{device_id}", status_code=204)
def delete_device(device_id: str, ctx: AppContext = Depends(get_ctx)) -> Response:
    with ctx.session() as s:
        device = devsvc.get_device(s, device_id)
        certsvc.revoke_all_quietly(s, ctx, device.id)  # its certificates go on the CRL (cert mode)
        devsvc.delete_device(s, ctx, device)
    return Response(status_code=204)


@router.get("/devices/{device_id}/actions", response_model=list[schemas.DeviceActionPublic])
def device_actions(device_id: str, ctx: AppContext = Depends(get_ctx)) -> list[schemas.DeviceActionPublic]:
    with ctx.session() as s:
        devsvc.get_device(s, device_id)
        return [views.action(a) for a in devsvc.actions_of(s, device_id)]
