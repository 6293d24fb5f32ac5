"""Model registry: hardware classes, models and their versions."""

from __future__ import annotations

import time

from sqlmodel import Session, col, select

from tinyfleet.server.models import HardwareClass, Model, ModelVersion, Package
from tinyfleet.server.schemas import HardwareClassPut, ModelCreate, ModelUpdate
from tinyfleet.server.services.errors import Conflict, NotFound


def put_hardware_class(session: Session, class_id: int, body: HardwareClassPut) -> HardwareClass:
    hw = session.get(HardwareClass, class_id)
    if hw is None:
        hw = HardwareClass(id=class_id, name=body.name, chunk_size=body.chunk_size, created_at=time.time())
    else:
        hw.name, hw.chunk_size = body.name, body.chunk_size
    hw.slot_size, hw.ram_budget = body.slot_size, body.ram_budget  # a PUT replaces the whole class
    hw.model_ram = body.model_ram
    session.add(hw)
    session.flush()
    return hw


def list_hardware_classes(session: Session) -> list[HardwareClass]:
    return list(session.exec(select(HardwareClass).order_by(col(HardwareClass.id))))


def chunk_size_for(session: Session, hardware_class: int, default: int) -> int:
    hw = session.get(HardwareClass, hardware_class)
    return hw.chunk_size if hw is not None else default


def create_model(session: Session, body: ModelCreate) -> Model:
    if session.exec(select(Model).where(Model.name == body.name)).first() is not None:
        raise Conflict(f"model {body.name!r} already exists")
    model = Model(name=body.name, description=body.description, created_at=time.time())
    session.add(model)
    session.flush()
    return model


def update_model(session: Session, model_id: int, body: ModelUpdate) -> Model:
    model = get_model(session, model_id)
    model.description = body.description
    session.add(model)
    session.flush()
    return model


def get_model(session: Session, model_id: int) -> Model:
    model = session.get(Model, model_id)
    if model is None:
        raise NotFound(f"model {model_id} not found")
    return model


def get_model_by_name(session: Session, name: str) -> Model:
    model = session.exec(select(Model).where(Model.name == name)).first()
    if model is None:
        raise NotFound(f"model {name!r} not found")
    return model


def list_models(session: Session) -> list[Model]:
    return list(session.exec(select(Model).order_by(col(Model.id))))


def versions_of(session: Session, model_id: int) -> list[ModelVersion]:
    stmt = select(ModelVersion).where(ModelVersion.model_id == model_id).order_by(col(ModelVersion.id))
    return list(session.exec(stmt))


def get_version(session: Session, version_id: int) -> ModelVersion:
    mv = session.get(ModelVersion, version_id)
    if mv is None:
        raise NotFound(f"model version {version_id} not found")
    return mv


def find_version(session: Session, model_id: int, version: str) -> ModelVersion | None:
    stmt = select(ModelVersion).where(ModelVersion.model_id == model_id, ModelVersion.version == version)
    return session.exec(stmt).first()


def get_or_create_version(session: Session, model: Model, version: str, notes: str) -> ModelVersion:
    mv = find_version(session, model.id or 0, version)
    if mv is None:
        mv = ModelVersion(model_id=model.id or 0, version=version, notes=notes, created_at=time.time())
        session.add(mv)
        session.flush()
    return mv


def delete_model(session: Session, model_id: int) -> None:
    model = get_model(session, model_id)
    if versions_of(session, model_id):
        raise Conflict(f"model {model.name!r} has versions; it cannot be deleted")
    session.delete(model)
    session.flush()


def packages_of_version(session: Session, version_id: int) -> list[Package]:
    stmt = (
        select(Package)
        .where(Package.model_version_id == version_id)
        .order_by(col(Package.hardware_class), col(Package.sequence))
    )
    return list(session.exec(stmt))
