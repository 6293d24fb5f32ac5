"""Encrypted rollouts (PROTOCOL 6): device key pairs, encrypted package copies, per-device key wraps.

A device gets an X25519 key pair at provisioning; the server keeps only the public key. An encrypted
rollout sends each device the encrypted copy of whatever it would have been sent (the raw package or a
compressed / delta variant): re-signed with flags bit 0 set and the payload XOR ChaCha20 under a fresh
content key, built once per source and shared. At send time the content key is wrapped for the device
(ephemeral X25519 + HKDF + HMAC bound to the signed manifest) and the wrap is stored, so that a restart,
a resend or another replica hands the device the same 80 bytes; it travels as the desired state's
"content_key" (PROTOCOL 4.1).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from tinyfleet.server.models import (
    Device,
    EncryptedPackage,
    HardwareClass,
    KeyWrap,
    Package,
    PackageBlob,
    PackageVariant,
)
from tinyfleet.server.services.errors import Invalid
from tinyfleet.server.services.ids import new_id
from tinyfleet.server.services.signer import ServerKeys
from tinyfleet.signing import encryption as enc
from tinyfleet.signing.manifest import MANIFEST_SIZE, parse_unverified

T = TypeVar("T")


def new_device_key() -> tuple[str, str]:
    """A device key pair: (private key as base64, shown once; public key as hex, stored)."""
    private, public = enc.generate_device_keypair()
    return base64.b64encode(private).decode("ascii"), public.hex()


def new_device_keys(n: int) -> list[tuple[str, str]]:
    return [new_device_key() for _ in range(n)]


def check_signable(packages: list[Package], keys: ServerKeys | None) -> None:
    """An encrypted copy is re-signed by this server: every package must be server-signed with its key."""
    for pkg in packages:
        if keys is None or pkg.signed_by != "server" or pkg.key_id != keys.key_id_hex:
            raise Invalid(
                f"package {pkg.id} was signed offline (key {pkg.key_id}); the server can only encrypt"
                " packages it signed itself: upload the .tflite, or roll it out unencrypted"
            )


def check_model_ram(session: Session, packages: list[Package]) -> None:
    """A model encrypted at rest runs decrypted in the device's model RAM (PROTOCOL 6.6), and a device
    refuses a bigger one at begin (MODEL_RAM_TOO_SMALL): an encrypted rollout of a model larger than the
    model RAM its hardware class declares is refused before any device is sent it."""
    for pkg in packages:
        hw = session.get(HardwareClass, pkg.hardware_class)
        if hw is not None and hw.model_ram is not None and pkg.model_size > hw.model_ram:
            raise Invalid(
                f"package {pkg.id}: the model is {pkg.model_size} bytes, more than the {hw.model_ram} bytes"
                f" of model RAM hardware class {hw.id} ({hw.name}) declares; its devices would refuse it"
                " encrypted (MODEL_RAM_TOO_SMALL, 44): roll it out unencrypted"
            )


def _source_bytes(session: Session, source_id: str) -> tuple[bytes, int]:
    """(package bytes, hardware class) of a stored package or a ready variant."""
    pkg = session.get(Package, source_id)
    if pkg is not None:
        blob = session.get(PackageBlob, source_id)
        if blob is not None:
            return bytes(blob.data), pkg.hardware_class
    variant = session.get(PackageVariant, source_id)
    if variant is not None and variant.data is not None:
        source = session.get(Package, variant.source_package_id)
        if source is not None:
            return bytes(variant.data), source.hardware_class
    raise Invalid(f"package {source_id!r} has no stored bytes to encrypt")


def _insert_once(session: Session, row: object, find: Callable[[], T | None]) -> T:
    """Insert `row` unless another transaction (a replica) stored its key first; the stored one wins."""
    try:
        with session.begin_nested():  # a savepoint: a clash must not abort the caller's transaction
            session.add(row)
    except IntegrityError:
        pass
    found = find()
    assert found is not None
    return found


def _encrypted_of(session: Session, source_id: str) -> EncryptedPackage | None:
    return session.exec(select(EncryptedPackage).where(EncryptedPackage.source_id == source_id)).first()


def encrypted_copy(session: Session, keys: ServerKeys, source_id: str) -> EncryptedPackage:
    """The encrypted copy of a package or variant, built (milliseconds: one ChaCha20 pass and one
    signature) and stored on first use."""
    found = _encrypted_of(session, source_id)
    if found is not None:
        return found
    data, hardware_class = _source_bytes(session, source_id)
    content_key = enc.new_content_key()
    try:
        sealed = enc.encrypt_package(data, content_key, keys.private_key)
    except ValueError as exc:
        raise Invalid(f"cannot encrypt package {source_id}: {exc}") from None
    row = EncryptedPackage(
        id=new_id("pke", 8),
        source_id=source_id,
        hardware_class=hardware_class,
        payload_encoding=parse_unverified(sealed).payload_encoding,
        content_key=content_key,
        size=len(sealed),
        sha256=hashlib.sha256(sealed).hexdigest(),
        data=sealed,
        created_at=time.time(),
    )
    return _insert_once(session, row, lambda: _encrypted_of(session, source_id))


def device_public_key(device: Device) -> bytes | None:
    key = device.encryption_public_key
    return bytes.fromhex(key) if key else None


# Rows per INSERT: SQLite binds at most 32,766 parameters in one statement (4 a row), PostgreSQL 65,535.
ROWS_PER_INSERT = 8000

WrapKey = tuple[str, str]  # (encrypted package id, device id)


def _stored_wrap(session: Session, key: WrapKey) -> bytes | None:
    stmt = select(KeyWrap.wrap).where(KeyWrap.encrypted_package_id == key[0], KeyWrap.device_id == key[1])
    found = session.exec(stmt).first()
    return bytes(found) if found is not None else None


def _stored_wraps(session: Session, keys: list[WrapKey]) -> dict[WrapKey, bytes]:
    if len(keys) == 1:  # one device (a resend): an equality, cheaper than building an IN list
        one = _stored_wrap(session, keys[0])
        return {keys[0]: one} if one is not None else {}
    by_package: dict[str, list[str]] = {}
    for sealed_id, device_id in keys:
        by_package.setdefault(sealed_id, []).append(device_id)
    found: dict[WrapKey, bytes] = {}
    for sealed_id, device_ids in by_package.items():
        for start in range(0, len(device_ids), ROWS_PER_INSERT):
            stmt = select(KeyWrap.device_id, KeyWrap.wrap).where(
                KeyWrap.encrypted_package_id == sealed_id,
                col(KeyWrap.device_id).in_(device_ids[start : start + ROWS_PER_INSERT]),
            )
            for device_id, wrap in session.exec(stmt):
                found[(sealed_id, device_id)] = bytes(wrap)
    return found


def wrap_many(session: Session, wanted: list[tuple[EncryptedPackage, Device]]) -> dict[WrapKey, bytes]:
    """The content key of each encrypted package wrapped for its device: new wraps, stored with one
    multi-row INSERT ... ON CONFLICT DO NOTHING, except where a wrap was stored before (a resend, a
    restart between a dispatch and its commit, another replica): that one is read back and wins, so a
    device is always handed the same 80 bytes. A rollout tick wraps every device it dispatches at once:
    one statement per device cost several times the wrap itself."""
    rows: dict[WrapKey, dict[str, object]] = {}
    wraps: dict[WrapKey, bytes] = {}
    now = time.time()
    for sealed, device in wanted:
        key = (sealed.id, device.id)
        if key in rows:
            continue
        public = device_public_key(device)
        if public is None:
            raise Invalid(f"device {device.id!r} has no encryption key (provisioned before device keys)")
        # Wrapped before looking: a stored wrap is rare, so wrapping all then inserting once beats a
        # SELECT first.
        wrap = enc.wrap_content_key(bytes(sealed.content_key), public, bytes(sealed.data[:MANIFEST_SIZE]))
        wraps[key] = wrap
        rows[key] = {
            "encrypted_package_id": sealed.id,
            "device_id": device.id,
            "wrap": wrap,
            "created_at": now,
        }
    if not rows:
        return {}
    # Core on the session's connection, no autoflush: the ORM's unit of work cost more than the wraps.
    with session.no_autoflush:
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        table = KeyWrap.__table__  # type: ignore[attr-defined]
        # In key order: two transactions storing overlapping wraps wait on each other's rows in one
        # order, never in a cycle (a deadlock on PostgreSQL).
        values = [rows[key] for key in sorted(rows)]
        stored = 0
        for start in range(0, len(values), ROWS_PER_INSERT):
            part = values[start : start + ROWS_PER_INSERT]
            # One row as keywords: its compiled statement is cached, a one-row VALUES list's is not.
            stmt = insert(table).values(**part[0]) if len(part) == 1 else insert(table).values(part)
            stored += session.connection().execute(stmt.on_conflict_do_nothing()).rowcount
        if stored < len(values):  # some conflicted: their stored wraps are the ones the devices get
            wraps.update(_stored_wraps(session, list(rows)))
    return wraps


def wrap_for(session: Session, sealed: EncryptedPackage, device: Device) -> bytes:
    """The content key of `sealed` wrapped for `device`: the stored wrap, or a new one stored now."""
    return wrap_many(session, [(sealed, device)])[(sealed.id, device.id)]


def _sealed_row(session: Session, package_id: str) -> EncryptedPackage | None:
    # Held for the session: the identity map keeps rows only while someone does (one query per device).
    held: dict[str, EncryptedPackage | None] = session.info.setdefault("tinyfleet_sealed", {})
    if package_id not in held:
        with session.no_autoflush:
            held[package_id] = session.get(EncryptedPackage, package_id)
    return held[package_id]


def content_key_fields(session: Session, sent: list[tuple[str | None, Device]]) -> dict[WrapKey, str]:
    """The desired states' "content_key" (base64 of the 80-byte wrap) of every (sent package, device)
    whose package is an encrypted copy, keyed by (package id, device id); clear ones are left out."""
    wanted: list[tuple[EncryptedPackage, Device]] = []
    for package_id, device in sent:
        sealed = _sealed_row(session, package_id) if package_id else None
        if sealed is not None:
            wanted.append((sealed, device))
    return {key: base64.b64encode(w).decode("ascii") for key, w in wrap_many(session, wanted).items()}


def content_key_field(session: Session, sent_package_id: str | None, device: Device) -> str | None:
    """The desired state's "content_key" for one device; None for a clear package."""
    if not sent_package_id:
        return None
    return content_key_fields(session, [(sent_package_id, device)]).get((sent_package_id, device.id))


def reissue_device_key(session: Session, device: Device) -> str:
    """A new key pair for `device`; returns the private key (base64, shown once). Wraps made for the
    old key are deleted: the next send wraps for the new one."""
    private, public = new_device_key()
    device.encryption_public_key = public
    session.add(device)
    session.execute(delete(KeyWrap).where(col(KeyWrap.device_id) == device.id))
    session.flush()
    return private
