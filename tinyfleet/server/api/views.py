"""Rows -> public schemas (the joins a response needs live here, not in the routes)."""

from __future__ import annotations

from sqlmodel import Session

from tinyfleet.server import schemas
from tinyfleet.server.canary import gate as canary_gate
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import (
    CanaryGate,
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
from tinyfleet.server.services.fleet_ca import IssuedCert


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


def trust_store(ctx: AppContext) -> list[schemas.TrustedKeyPublic]:
    return [schemas.TrustedKeyPublic(**k) for k in ctx.keys.public_keys()]


def provisioned(
    session: Session,
    ctx: AppContext,
    d: Device,
    password: str | None,
    cert: IssuedCert | None = None,
    encryption_key: str | None = None,
) -> schemas.ProvisionResult:
    """What a device needs to join: MQTT credentials (the password or the certificate and its key, shown
    once), trust store, chunk size, and at provisioning its encryption key (shown once)."""
    url = ctx.device_mqtt()
    return schemas.ProvisionResult(
        device=device(d),
        mqtt=schemas.MqttCredentials(
            host=url.host if url else None,
            port=url.port if url else None,
            tls=url.tls if url else False,
            username=d.id,
            password=password,
            topic_prefix=f"tf/{d.id}/",
        ),
        trust_store=trust_store(ctx),
        chunk_size=registry.chunk_size_for(session, d.hardware_class, ctx.settings.default_chunk_size),
        certificate=certificate(ctx, cert) if cert is not None else None,
        encryption_key=encryption_key or None,
    )


def certificate(ctx: AppContext, cert: IssuedCert) -> schemas.DeviceCertificate:
    ca = ctx.fleet_ca
    return schemas.DeviceCertificate(
        serial=cert.serial,
        not_after=cert.not_after,
        certificate_pem=cert.cert_pem,
        private_key_pem=cert.key_pem,
        ca_pem=ca.cert_pem if ca is not None else "",
    )


ROLLBACK_STATES = ("rolling_back", "rolled_back")


def rollout(session: Session, r: Rollout) -> schemas.RolloutPublic:
    name, ver = rsvc.version_label(session, r.model_version_id)
    actions = rsvc.actions_of(session, r.id or 0)
    return schemas.RolloutPublic(
        model_name=name,
        version=ver,
        deploy=schemas.RolloutCounts(**rsvc.counts([a for a in actions if a.purpose == "deploy"])),
        rollback=schemas.RolloutCounts(**rsvc.counts([a for a in actions if a.purpose == "rollback"])),
        transfer=schemas.RolloutBytes(**rsvc.transfer(actions)),
        rollback_outcome=rsvc.rollback_outcomes(actions) if r.state in ROLLBACK_STATES else {},
        gates=[gate(g) for g in canary_gate.gates_of(session, r.id or 0)],
        **r.model_dump(),
    )


def gate(g: CanaryGate) -> schemas.GatePublic:
    return schemas.GatePublic(**g.model_dump(exclude={"id", "rollout_id", "created_at"}))


def action(a: DeviceAction) -> schemas.DeviceActionPublic:
    return schemas.DeviceActionPublic(outcome=rsvc.rollback_outcome(a), **a.model_dump())


def telemetry(t: TelemetryReport) -> schemas.TelemetryPublic:
    return schemas.TelemetryPublic(**t.model_dump(exclude={"id", "received_at"}))
