"""Models, their versions and hardware classes. A version is created by uploading a .tflite, which the
server packages and signs for one hardware class."""

from __future__ import annotations

from typing import Annotated, BinaryIO

from fastapi import APIRouter, Depends, Path, Query, Response

from tinyfleet.server import schemas
from tinyfleet.server.api import views
from tinyfleet.server.api.deps import OCTET_STREAM_BODY, U32, DbId, get_ctx, upload_file
from tinyfleet.server.context import AppContext
from tinyfleet.server.services import packages as pkgsvc
from tinyfleet.server.services import registry

router = APIRouter(tags=["models"])


@router.get("/hardware-classes", response_model=list[schemas.HardwareClassPublic])
def list_hardware_classes(ctx: AppContext = Depends(get_ctx)) -> list[schemas.HardwareClassPublic]:
    with ctx.session() as s:
        return [schemas.HardwareClassPublic(**h.model_dump()) for h in registry.list_hardware_classes(s)]


@router.put("/hardware-classes/{class_id}", response_model=schemas.HardwareClassPublic)
def put_hardware_class(
    body: schemas.HardwareClassPut,
    class_id: int = Path(ge=0, le=U32),
    ctx: AppContext = Depends(get_ctx),
) -> schemas.HardwareClassPublic:
    with ctx.session() as s:
        hw = registry.put_hardware_class(s, class_id, body)
        return schemas.HardwareClassPublic(**hw.model_dump())


@router.post("/models", response_model=schemas.ModelPublic, status_code=201)
def create_model(body: schemas.ModelCreate, ctx: AppContext = Depends(get_ctx)) -> schemas.ModelPublic:
    with ctx.session() as s:
        return views.model(s, registry.create_model(s, body))


@router.get("/models", response_model=list[schemas.ModelPublic])
def list_models(ctx: AppContext = Depends(get_ctx)) -> list[schemas.ModelPublic]:
    with ctx.session() as s:
        return [views.model(s, m) for m in registry.list_models(s)]


@router.get("/models/{model_id}", response_model=schemas.ModelPublic)
def get_model(model_id: DbId, ctx: AppContext = Depends(get_ctx)) -> schemas.ModelPublic:
    with ctx.session() as s:
        return views.model(s, registry.get_model(s, model_id))


@router.patch("/models/{model_id}", response_model=schemas.ModelPublic)
def update_model(
    model_id: DbId, body: schemas.ModelUpdate, ctx: AppContext = Depends(get_ctx)
) -> schemas.ModelPublic:
    with ctx.session() as s:
        return views.model(s, registry.update_model(s, model_id, body))


@router.delete("/models/{model_id}", status_code=204)
def delete_model(model_id: DbId, ctx: AppContext = Depends(get_ctx)) -> Response:
    with ctx.session() as s:
        registry.delete_model(s, model_id)
    return Response(status_code=204)


@router.get("/models/{model_id}/versions", response_model=list[schemas.ModelVersionPublic])
def list_versions(model_id: DbId, ctx: AppContext = Depends(get_ctx)) -> list[schemas.ModelVersionPublic]:
    with ctx.session() as s:
        registry.get_model(s, model_id)
        return [views.version(s, v) for v in registry.versions_of(s, model_id)]


@router.post(
    "/models/{model_id}/versions",
    response_model=schemas.ModelVersionPublic,
    status_code=201,
    openapi_extra=OCTET_STREAM_BODY,
    summary="Upload a .tflite: the server builds and signs a package with its own key",
    description=(
        "The package's sequence is the server's next for its signing key, across ALL models: one above"
        " every package it signed or stores, so devices running any other model accept it (a device"
        " refuses a sequence not above its active package's, whatever the model; PROTOCOL 1.1)."
    ),
)
def upload_tflite(
    model_id: DbId,
    version: Annotated[schemas.SemVer, Query(description="semantic version x.y.z")],
    hardware_class: int = Query(ge=0, le=U32),
    min_runtime_version: Annotated[schemas.RuntimeVersion, Query()] = "0.1.0",
    security_counter: int | None = Query(
        default=None, ge=0, le=U32, description="default: the model's latest"
    ),
    notes: str = Query(default="", max_length=500),
    upload: BinaryIO = Depends(upload_file),
    ctx: AppContext = Depends(get_ctx),
) -> schemas.ModelVersionPublic:
    with ctx.session() as s:
        model = registry.get_model(s, model_id)
        pkg = pkgsvc.build_from_tflite(
            s,
            ctx.keys,
            model,
            version=version,
            tflite=upload.read(),
            hardware_class=hardware_class,
            min_runtime_version=min_runtime_version,
            security_counter=security_counter,
            notes=notes,
            settings=ctx.settings,
        )
        return views.version(s, registry.get_version(s, pkg.model_version_id))


@router.get("/versions/{version_id}", response_model=schemas.ModelVersionPublic)
def get_version(version_id: DbId, ctx: AppContext = Depends(get_ctx)) -> schemas.ModelVersionPublic:
    with ctx.session() as s:
        return views.version(s, registry.get_version(s, version_id))
