"""Packages: built and signed here from an uploaded .tflite, or uploaded already signed (offline) and
verified against the trust store. Bytes live in the database; reads for chunks go through a small cache
because packages never change once stored."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict

from sqlalchemy import case, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from tinyfleet.server.config import Settings
from tinyfleet.server.models import (
    EncryptedPackage,
    Model,
    ModelVersion,
    Package,
    PackageBlob,
    PackageVariant,
    SigningSequence,
)
from tinyfleet.server.services import registry
from tinyfleet.server.services.compatibility import check_class_limits
from tinyfleet.server.services.errors import Conflict, Invalid, NotFound
from tinyfleet.server.services.ids import new_id
from tinyfleet.server.services.model_check import MIB, CheckLimits, check_model
from tinyfleet.server.services.signer import ServerKeys
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.errors import SigningError
from tinyfleet.signing.manifest import ENC_DELTA, MANIFEST_SIZE, Manifest, parse_unverified
from tinyfleet.signing.package import build_package, verify_package
from tinyfleet.signing.tflite import parse_model

log = logging.getLogger(__name__)


class RollbackImpossible(Invalid):
    """No package can bring a device back to its old model; `code` is the runtime's refusal code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


MAX_SEQUENCE = 0xFFFFFFFF  # the manifest's u32


def next_sequence(session: Session, key_id: str) -> int:
    """The sequence for the next package the server signs with key `key_id`, whatever its model.

    A device refuses a package whose sequence is not above its ACTIVE package's, whatever that package's
    model (docs/PROTOCOL.md 1.1), so a per-model count would make a second model's first package
    (sequence 1) a replay on devices running the first model. The number is one above the last one given
    with this key or any other (`signing_sequences`) and above every package stored (any model, any key,
    offline ones included), so it is accepted over whatever a device got from this server. The counter
    row is bumped in the caller's transaction: a concurrent upload waits on its row lock (PostgreSQL) or
    on the write lock (SQLite), and two first uploads racing to create the row retry on the primary key."""
    table = SigningSequence.__table__  # type: ignore[attr-defined]
    conn = session.connection()
    stored = int(session.exec(select(func.max(Package.sequence))).one() or 0)
    given = int(conn.execute(select(func.max(table.c.last_sequence))).scalar() or 0)  # any key's
    floor = max(stored, given)
    for _ in range(5):
        bumped = conn.execute(
            update(table)
            .where(table.c.key_id == key_id)
            .values(
                last_sequence=case((table.c.last_sequence < floor, floor), else_=table.c.last_sequence) + 1
            )
        )
        if bumped.rowcount == 1:
            current = select(table.c.last_sequence).where(table.c.key_id == key_id)
            value = int(conn.execute(current).scalar_one())
            break
        try:
            with conn.begin_nested():  # a savepoint: a clash must not abort the whole transaction
                conn.execute(insert(table).values(key_id=key_id, last_sequence=floor + 1))
        except IntegrityError:
            continue  # another upload created the row first: bump it instead
        value = floor + 1
        break
    else:
        raise Conflict("could not take the next sequence number (concurrent uploads); try again")
    if value > MAX_SEQUENCE:
        raise Invalid(f"sequence numbers are exhausted: {value} does not fit the manifest's 32 bits")
    return value


def _latest_security_counter(session: Session, model: Model) -> int:
    stmt = (
        select(func.max(Package.security_counter))
        .join(ModelVersion, col(Package.model_version_id) == col(ModelVersion.id))
        .where(ModelVersion.model_id == model.id)
    )
    return int(session.exec(stmt).one() or 0)


def _store(
    session: Session,
    mv: ModelVersion,
    data: bytes,
    manifest: Manifest,
    signed_by: str,
    rebuilt_from: str | None = None,
) -> Package:
    check_class_limits(session, manifest.hardware_class, manifest.model_size, manifest.arena_bytes)
    existing = package_for(session, mv.id or 0, manifest.hardware_class)
    if existing is not None and rebuilt_from is None:
        raise Conflict(
            f"version {mv.version} already has a package for hardware class {manifest.hardware_class}"
            f" ({existing.id})"
        )
    pkg = Package(
        id=new_id("pkg", 8),
        model_version_id=mv.id or 0,
        hardware_class=manifest.hardware_class,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        model_sha256=manifest.model_sha256.hex(),
        model_size=manifest.model_size,
        payload_encoding=manifest.payload_encoding,
        sequence=manifest.sequence,
        security_counter=manifest.security_counter,
        min_runtime_version=manifest.min_runtime_version,
        arena_bytes=manifest.arena_bytes,
        key_id=manifest.key_id.hex(),
        signed_by=signed_by,
        rebuilt_from=rebuilt_from,
        created_at=time.time(),
    )
    session.add(pkg)
    session.flush()
    session.add(PackageBlob(package_id=pkg.id, data=data))
    session.flush()
    return pkg


def build_from_tflite(
    session: Session,
    keys: ServerKeys,
    model: Model,
    *,
    version: str,
    tflite: bytes,
    hardware_class: int,
    min_runtime_version: str,
    security_counter: int | None,
    notes: str = "",
    settings: Settings | None = None,
) -> Package:
    """Sign `tflite` with the server key as `model` `version` for one hardware class."""
    if not tflite:
        raise Invalid("the request body is empty; send the .tflite bytes")
    try:
        parse_model(tflite)
    except (SigningError, ValueError) as exc:
        raise Invalid(f"cannot package this model: {exc}") from None
    facts = check_model(tflite, limits=_limits(settings))
    mv = registry.get_or_create_version(session, model, version, notes)
    counter = _latest_security_counter(session, model) if security_counter is None else security_counter
    try:
        data = build_package(
            tflite,
            keys.private_key,
            name=model.name,
            version=version,
            sequence=next_sequence(session, keys.key_id_hex),
            security_counter=counter,
            hardware_class=hardware_class,
            min_runtime_version=min_runtime_version,
            arena_bytes=facts.arena_bytes if facts else None,
            selftest_seed=facts.selftest_seed if facts else 0,
            selftest_output_sha256=facts.selftest_output_sha256 if facts else None,
        )
        manifest = verify_package(data, keys.trust_store).manifest
    except SigningError as exc:
        raise Invalid(f"cannot package this model: {exc}") from None
    except ValueError as exc:
        raise Invalid(f"cannot package this model: {exc}") from None
    return _store(session, mv, data, manifest, "server")


def _limits(settings: Settings | None) -> CheckLimits | None:
    if settings is None:
        return None
    return CheckLimits(
        settings.model_check_seconds, settings.model_check_memory_mb * MIB, settings.model_check_wall_seconds
    )


def _check_offline_model(
    payload: bytes, manifest: Manifest, limits: CheckLimits | None, allow_selftest_mismatch: bool = False
) -> None:
    """The upload check (model_check) on the model an offline package carries: a valid signature says
    who built it, not that the engine can run it or that its self-test is right. Compressed payloads are
    decoded by the checker; delta payloads are refused, because their base is whatever the devices run,
    which the server may not hold (the server makes delta variants of raw packages itself)."""
    if manifest.payload_encoding == ENC_DELTA:
        raise Invalid("package refused: offline delta packages cannot be checked; upload the raw package")
    facts = check_model(
        payload, encoding=manifest.payload_encoding, seed=manifest.selftest_seed, limits=limits
    )
    if facts is None:
        return
    if facts.model_sha256 != manifest.model_sha256:
        raise Invalid("package refused: the decoded payload is not the model the manifest names")
    if manifest.selftest_seed and facts.selftest_output_sha256 != manifest.selftest_output_sha256:
        if allow_selftest_mismatch:  # asked for: e.g. to watch devices refuse it and roll back
            log.warning("package %s v%s stored with a self-test every device will fail", manifest.model_name,
                        manifest.version_str)  # fmt: skip
            return
        raise Invalid(
            "package refused: its self-test digest differs from the reference interpreter's"
            " (every device would fail the self-test; allow_selftest_mismatch=true stores it anyway)"
        )


def import_signed(
    session: Session,
    keys: ServerKeys,
    data: bytes,
    notes: str = "",
    settings: Settings | None = None,
    allow_selftest_mismatch: bool = False,
) -> Package:
    """Store a package signed offline after verifying it against the server's trust store."""
    if len(data) < MANIFEST_SIZE:
        raise Invalid(f"a package is at least {MANIFEST_SIZE} bytes; got {len(data)}")
    try:
        verified = verify_package(data, keys.trust_store)
    except SigningError as exc:
        raise Invalid(f"package refused: {exc}") from None
    manifest = verified.manifest
    _check_offline_model(verified.payload, manifest, _limits(settings), allow_selftest_mismatch)
    model = registry.get_model_by_name(session, manifest.model_name)
    mv = registry.get_or_create_version(session, model, manifest.version_str, notes)
    clash = session.exec(
        select(Package)
        .join(ModelVersion, col(Package.model_version_id) == col(ModelVersion.id))
        .where(ModelVersion.model_id == model.id, Package.sequence == manifest.sequence)
    ).first()
    if clash is not None:
        raise Conflict(f"sequence {manifest.sequence} of model {model.name!r} is already used by {clash.id}")
    return _store(session, mv, data, manifest, "offline")


def get_package(session: Session, package_id: str) -> Package:
    pkg = session.get(Package, package_id)
    if pkg is None:
        raise NotFound(f"package {package_id!r} not found")
    return pkg


def list_packages(session: Session, model_version_id: int | None = None) -> list[Package]:
    stmt = select(Package).order_by(col(Package.created_at))
    if model_version_id is not None:
        stmt = stmt.where(Package.model_version_id == model_version_id)
    return list(session.exec(stmt))


def package_for(session: Session, model_version_id: int, hardware_class: int) -> Package | None:
    """The version's original package for a hardware class (not a rollback re-signing)."""
    stmt = select(Package).where(
        Package.model_version_id == model_version_id,
        Package.hardware_class == hardware_class,
        col(Package.rebuilt_from).is_(None),
    )
    return session.exec(stmt).first()


def rollback_package(
    session: Session, keys: ServerKeys, old: Package, active_sequence: int, security_floor: int
) -> Package:
    """A package that reinstalls `old`'s model on a device whose active model has `active_sequence`.

    The runtime refuses a sequence not above the active model's (replay protection), so the old package
    itself can only be reinstalled over an older model; otherwise the same model is re-signed with the
    server key and the key's next sequence number (see next_sequence; kept and reused for other
    devices). The security counter stays the old one: if the device's anti-rollback floor is above it,
    no package can help."""
    if old.security_counter < security_floor:
        raise RollbackImpossible(
            ErrorCode.ROLLBACK_REFUSED,
            f"ROLLBACK_REFUSED: the device's security floor {security_floor} is above the old"
            f" package's security counter {old.security_counter}",
        )
    if old.sequence > active_sequence:
        return old
    stmt = (
        select(Package)
        .where(Package.rebuilt_from == old.id, col(Package.sequence) > active_sequence)
        .order_by(col(Package.sequence))
    )
    again = session.exec(stmt).first()
    if again is not None:
        return again
    if old.payload_encoding != 0:
        raise RollbackImpossible(
            ErrorCode.REPLAYED,
            f"the old package {old.id} is not raw (encoding {old.payload_encoding}); cannot re-sign it",
        )
    mv = registry.get_version(session, old.model_version_id)
    model = registry.get_model(session, mv.model_id)
    blob = session.get(PackageBlob, old.id)
    if blob is None:
        raise RollbackImpossible(ErrorCode.REPLAYED, f"package {old.id!r} has no stored bytes")
    payload = bytes(blob.data)[MANIFEST_SIZE:]
    try:
        old_manifest = parse_unverified(bytes(blob.data))
        data = build_package(
            payload,
            keys.private_key,
            name=model.name,
            version=mv.version,
            sequence=next_sequence(session, keys.key_id_hex),
            security_counter=old.security_counter,
            hardware_class=old.hardware_class,
            min_runtime_version=old.min_runtime_version,
            arena_bytes=old.arena_bytes,
            selftest_seed=old_manifest.selftest_seed,
            selftest_output_sha256=old_manifest.selftest_output_sha256
            if old_manifest.selftest_seed
            else None,
        )
        manifest = verify_package(data, keys.trust_store).manifest
    except (SigningError, ValueError) as exc:
        raise RollbackImpossible(
            ErrorCode.REPLAYED, f"cannot re-sign the old package {old.id}: {exc}"
        ) from None
    return _store(session, mv, data, manifest, "server", rebuilt_from=old.id)


def latest_package_with_model(session: Session, model_sha256: str, hardware_class: int) -> Package | None:
    stmt = (
        select(Package)
        .where(Package.model_sha256 == model_sha256, Package.hardware_class == hardware_class)
        .order_by(col(Package.sequence).desc())
    )
    return session.exec(stmt).first()


def _stored(session: Session, package_id: str) -> tuple[bytes, int] | None:
    """(bytes, hardware class) of a package or of a ready payload variant (same id space for devices)."""
    pkg = session.get(Package, package_id)
    if pkg is not None:
        blob = session.get(PackageBlob, package_id)
        return (bytes(blob.data), pkg.hardware_class) if blob is not None else None
    variant = session.get(PackageVariant, package_id)
    if variant is None:
        sealed = session.get(EncryptedPackage, package_id)  # an encrypted rollout's copy (PROTOCOL 6)
        return (bytes(sealed.data), sealed.hardware_class) if sealed is not None else None
    if variant.status != "ready" or variant.data is None:
        return None
    source = session.get(Package, variant.source_package_id)
    return (bytes(variant.data), source.hardware_class) if source is not None else None


class PackageCache:
    """Package bytes (and hardware class) by id, least recently used out first. Packages never change
    once stored, so entries are never stale; chunk requests are served without touching the database."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max = max_bytes
        self._items: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def lookup(self, session: Session, package_id: str) -> tuple[bytes, int] | None:
        """(bytes, hardware class) of a package, or None if there is no such package."""
        with self._lock:
            entry = self._items.get(package_id)
            if entry is not None:
                self._items.move_to_end(package_id)
                return entry
        entry = _stored(session, package_id)
        if entry is None:
            return None
        with self._lock:
            if package_id not in self._items:
                self._items[package_id] = entry
                self._size += len(entry[0])
            while self._size > self._max and len(self._items) > 1:
                _, (old, _hw) = self._items.popitem(last=False)
                self._size -= len(old)
        return entry

    def get(self, session: Session, package_id: str) -> bytes:
        entry = self.lookup(session, package_id)
        if entry is None:
            raise NotFound(f"package {package_id!r} not found")
        return entry[0]
