"""Rows -> public schemas (the joins a response needs live here, not in the routes)."""

from __future__ import annotations

from sqlmodel import Session

from tinyfleet.server import schemas
from tinyfleet.server.models import (
    Device,
    DeviceAction,
    Model,
    ModelVersion,
    Package,
    Rollout,
    TelemetryReport,
)
from tinyfleet.server.services import registry
from tinyfleet.server.services import rollouts as rsvc


def package(session: Session, pkg: Package) -> schemas.PackagePublic:
    mv = registry.get_version(session, pkg.model_version_id)
    model = registry.get_model(session, mv.model_id)
    return schemas.PackagePublic(model_name=model.name, version=mv.version, **pkg.model_dump())


def version(session: Session, mv: ModelVersion) -> schemas.ModelVersionPublic:
    model = registry.get_model(session, mv.model_id)
    pkgs = [package(session, p) for p in registry.packages_of_version(session, mv.id or 0)]
    return schemas.ModelVersionPublic(model_name=model.name, packages=pkgs, **mv.model_dump())


def model(session: Session, m: Model) -> schemas.ModelPublic:
    versions = [v.version for v in registry.versions_of(session, m.id or 0)]
    return schemas.ModelPublic(versions=versions, **m.model_dump())


def device(d: Device) -> schemas.DevicePublic:
    return schemas.DevicePublic(**d.model_dump(exclude={"mqtt_password_hash"}))


def rollout(session: Session, r: Rollout) -> schemas.RolloutPublic:
    name, ver = rsvc.version_label(session, r.model_version_id)
    actions = rsvc.actions_of(session, r.id or 0)
    return schemas.RolloutPublic(
        model_name=name,
        version=ver,
        deploy=schemas.RolloutCounts(**rsvc.counts([a for a in actions if a.purpose == "deploy"])),
        rollback=schemas.RolloutCounts(**rsvc.counts([a for a in actions if a.purpose == "rollback"])),
        transfer=schemas.RolloutBytes(**rsvc.transfer(actions)),
        **r.model_dump(),
    )


def action(a: DeviceAction) -> schemas.DeviceActionPublic:
    return schemas.DeviceActionPublic(**a.model_dump())


def telemetry(t: TelemetryReport) -> schemas.TelemetryPublic:
    return schemas.TelemetryPublic(**t.model_dump(exclude={"id", "received_at"}))
