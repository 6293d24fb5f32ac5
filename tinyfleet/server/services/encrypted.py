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

from tinyfleet.server.models import Device, EncryptedPackage, KeyWrap, Package, PackageBlob, PackageVariant
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


def _stored_wrap(session: Session, sealed_id: str, device_id: str) -> bytes | None:
    stmt = select(KeyWrap.wrap).where(
        KeyWrap.encrypted_package_id == sealed_id, KeyWrap.device_id == device_id
    )
    found = session.exec(stmt).first()
    return bytes(found) if found is not None else None


def wrap_for(session: Session, sealed: EncryptedPackage, device: Device) -> bytes:
    """The content key of `sealed` wrapped for `device`: the stored wrap, or a new one stored now (if
    another replica stored one meanwhile, that one). Called for every device a tick dispatches: one
    statement and no autoflush (flushing the tick's pending rows once per device cost more than the
    wrap itself)."""
    public = device_public_key(device)
    if public is None:
        raise Invalid(f"device {device.id!r} has no encryption key (provisioned before device keys)")
    # Wrapped before looking: a stored wrap for this (package, device) is rare (a restart between the
    # dispatch and its commit, or another replica), so one INSERT per device beats SELECT then INSERT.
    wrap = enc.wrap_content_key(bytes(sealed.content_key), public, bytes(sealed.data[:MANIFEST_SIZE]))
    with session.no_autoflush:
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        row = {
            "encrypted_package_id": sealed.id,
            "device_id": device.id,
            "wrap": wrap,
            "created_at": time.time(),
        }
        # Core on the session's connection: the ORM's statement handling cost more than the wrap.
        table = KeyWrap.__table__  # type: ignore[attr-defined]
        done = session.connection().execute(insert(table).values(**row).on_conflict_do_nothing())
        if getattr(done, "rowcount", 1) == 1:
            return wrap
        stored = _stored_wrap(session, sealed.id, device.id)
        assert stored is not None
        return stored


def content_key_field(session: Session, sent_package_id: str | None, device: Device) -> str | None:
    """The desired state's "content_key" (base64 of the 80-byte wrap) when the device is sent an
    encrypted package; None for a clear one."""
    if not sent_package_id:
        return None
    # Held for the session: the identity map keeps rows only while someone does (one query per device).
    held: dict[str, EncryptedPackage | None] = session.info.setdefault("tinyfleet_sealed", {})
    if sent_package_id not in held:
        with session.no_autoflush:
            held[sent_package_id] = session.get(EncryptedPackage, sent_package_id)
    sealed = held[sent_package_id]
    if sealed is None:
        return None
    return base64.b64encode(wrap_for(session, sealed, device)).decode("ascii")


def reissue_device_key(session: Session, device: Device) -> str:
    """A new key pair for `device`; returns the private key (base64, shown once). Wraps made for the
    old key are deleted: the next send wraps for the new one."""
    private, public = new_device_key()
    device.encryption_public_key = public
    session.add(device)
    session.execute(delete(KeyWrap).where(col(KeyWrap.device_id) == device.id))
    session.flush()
    return private
