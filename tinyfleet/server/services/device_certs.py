"""Device certificates (TINYFLEET_DEVICE_AUTH=cert): provisioning with a certificate instead of a password,
rotation, revocation. The fleet CA signs (services/fleet_ca.py); the database keeps serials, never keys.

Nothing here touches the broker when a device is added: the broker trusts the CA. Revocation writes the
CRL the broker reads (`crlfile`) and asks it to reload; the gateway also ignores a revoked device's
messages at once (a device still connected keeps its TLS session until it disconnects).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from sqlalchemy import insert
from sqlmodel import Session, col, select

from tinyfleet.server.db import after_commit
from tinyfleet.server.models import Device, DeviceCert
from tinyfleet.server.schemas import DeviceCreate
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services.effects import Effects
from tinyfleet.server.services.errors import Conflict, Invalid
from tinyfleet.server.services.fleet_ca import BadCsr, FleetCA, IssuedCert
from tinyfleet.server.services.ids import new_id


class CertEffects(Effects, Protocol):
    """What certificate changes need of the control plane (AppContext implements it)."""

    @property
    def fleet_ca(self) -> FleetCA | None: ...

    def certificates_revoked(self) -> None:
        """Serials were revoked: rewrite the CRL, reload the broker, refresh the gateway's block list."""

    def certificates_issued(self, device_ids: list[str]) -> None:
        """These devices hold a valid certificate now (an id reused after a deletion, a revoked device
        given a new one): the gateway stops ignoring them."""


@dataclass(frozen=True)
class Provisioned:
    device_id: str
    hardware_class: int
    password: str | None
    cert: IssuedCert | None
    encryption_key: str = ""  # the device's X25519 private key (base64), shown once


def ca_of(fx: CertEffects) -> FleetCA:
    if fx.fleet_ca is None:
        raise Conflict("device certificates need TINYFLEET_DEVICE_AUTH=cert on the server")
    return fx.fleet_ca


def _issue(ca: FleetCA, device_id: str, csr: str | None) -> IssuedCert:
    try:
        return ca.issue_device(device_id, csr)
    except BadCsr as exc:
        raise Invalid(f"csr: {exc}") from None


def _issue_many(ca: FleetCA, bodies: list[DeviceCreate]) -> list[IssuedCert]:
    """_issue for many, on every core: cryptography releases the GIL while it makes keys and signs
    (2,000 certificates: 2.7 s on one thread, 1.0 s on two, here)."""
    workers = min(os.cpu_count() or 1, 16)
    if len(bodies) < 64 or workers == 1:
        return [_issue(ca, b.id or "", b.csr) for b in bodies]
    with ThreadPoolExecutor(workers, thread_name_prefix="x509") as pool:
        return list(pool.map(lambda b: _issue(ca, b.id or "", b.csr), bodies, chunksize=64))


def _record(session: Session, device_id: str, issued: IssuedCert, now: float) -> None:
    session.add(
        DeviceCert(device_id=device_id, serial=issued.serial, issued_at=now, not_after=issued.not_after)
    )


def provision(session: Session, fx: CertEffects, body: DeviceCreate) -> Provisioned:
    """One device: a password in password mode, a certificate (for its CSR, or with a new key) in cert
    mode. The certificate is made before the first write (no database lock held while signing)."""
    csr = body.csr
    if fx.fleet_ca is None:
        if csr is not None:
            ca_of(fx)  # the Conflict that says cert mode is off
        device, password, encryption_key = devsvc.provision(session, fx, body)
        return Provisioned(device.id, device.hardware_class, password, None, encryption_key)
    if body.id is None:
        if csr is not None:
            raise Invalid("csr: give the device id too (it must be the CSR's CN)")
        body = body.model_copy(update={"id": new_id("dev", 6)})
    assert body.id is not None
    issued = _issue(fx.fleet_ca, body.id, csr)
    device, _, encryption_key = devsvc.provision(session, fx, body, with_password=False)
    _record(session, device.id, issued, time.time())
    after_commit(session, partial(fx.certificates_issued, [device.id]))
    return Provisioned(device.id, device.hardware_class, None, issued, encryption_key)


def provision_bulk(session: Session, fx: CertEffects, bodies: list[DeviceCreate]) -> list[Provisioned]:
    """Many devices, all or none (devices.provision_bulk); in cert mode each gets a new key and cert."""
    if fx.fleet_ca is None:
        if any(b.csr is not None for b in bodies):
            ca_of(fx)
        created = devsvc.provision_bulk(session, fx, bodies)
        return [Provisioned(i, hw, pw, None, key) for i, hw, pw, key in created]
    ca = fx.fleet_ca
    if any(b.csr is not None and b.id is None for b in bodies):
        raise Invalid("csr: give the device id too (it must be the CSR's CN)")
    bodies = [b if b.id else b.model_copy(update={"id": new_id("dev", 6)}) for b in bodies]
    issued = _issue_many(ca, bodies)  # signed before the write lock, as password hashes are
    created = devsvc.provision_bulk(session, fx, bodies, with_password=False)
    now = time.time()
    rows = [
        {"device_id": device_id, "serial": c.serial, "issued_at": now, "not_after": c.not_after}
        for (device_id, _, _, _), c in zip(created, issued, strict=True)
    ]
    session.execute(insert(DeviceCert), rows)
    after_commit(session, partial(fx.certificates_issued, [d for d, _, _, _ in created]))
    return [Provisioned(i, hw, None, c, key) for (i, hw, _, key), c in zip(created, issued, strict=True)]


def _active(session: Session, device_id: str) -> list[DeviceCert]:
    stmt = select(DeviceCert).where(DeviceCert.device_id == device_id, col(DeviceCert.revoked_at).is_(None))
    return list(session.exec(stmt))


def revoke(session: Session, fx: CertEffects, device: Device) -> list[str]:
    """Revoke every certificate the device holds; returns their serials (none: Conflict)."""
    ca_of(fx)
    rows = _active(session, device.id)
    if not rows:
        raise Conflict(f"device {device.id!r} holds no valid certificate")
    now = time.time()
    for row in rows:
        row.revoked_at = now
        session.add(row)
    session.flush()
    after_commit(session, fx.certificates_revoked)
    return [row.serial for row in rows]


def revoke_all_quietly(session: Session, fx: CertEffects, device_id: str) -> None:
    """A device is being deleted: whatever certificates it holds go on the CRL (no error when none)."""
    rows = _active(session, device_id)
    now = time.time()
    for row in rows:
        row.revoked_at = now
        session.add(row)
    if rows:
        after_commit(session, fx.certificates_revoked)


def rotate(session: Session, fx: CertEffects, device: Device, csr: str | None = None) -> IssuedCert:
    """A new certificate for the device (for its CSR, or with a new key); the ones before are revoked."""
    issued = _issue(ca_of(fx), device.id, csr)
    now = time.time()
    old = _active(session, device.id)
    for row in old:
        row.revoked_at = now
        session.add(row)
    _record(session, device.id, issued, now)
    session.flush()
    if old:
        after_commit(session, fx.certificates_revoked)
    after_commit(session, partial(fx.certificates_issued, [device.id]))
    return issued


def revoked_serials(session: Session) -> list[tuple[str, float]]:
    """(serial, revoked at) of every revoked certificate still within its validity (the CRL's entries)."""
    now = time.time()
    stmt = select(DeviceCert.serial, DeviceCert.revoked_at).where(
        col(DeviceCert.revoked_at).is_not(None), col(DeviceCert.not_after) > now
    )
    return [(serial, float(at or 0.0)) for serial, at in session.exec(stmt)]


def blocked_devices(session: Session) -> frozenset[str]:
    """Devices that had certificates and hold no valid one now: the gateway ignores their messages."""
    revoked = set(session.exec(select(DeviceCert.device_id).where(col(DeviceCert.revoked_at).is_not(None))))
    if not revoked:
        return frozenset()
    valid = set(session.exec(select(DeviceCert.device_id).where(col(DeviceCert.revoked_at).is_(None))))
    return frozenset(revoked - valid)


def certificates_of(session: Session, device_id: str) -> list[DeviceCert]:
    stmt = select(DeviceCert).where(DeviceCert.device_id == device_id).order_by(col(DeviceCert.issued_at))
    return list(session.exec(stmt))
