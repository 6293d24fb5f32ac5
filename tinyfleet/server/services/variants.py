"""Payload variants: the fewest bytes to bring a device to a model version.

A server-signed raw package can be re-signed with a compressed payload (`payload_encoding` 1) or with a
delta against the model a device runs (encoding 2): same model, sequence, security counter and self-test,
so the device ends in exactly the same state. Variants are cached in `package_variants`, one row per
(package, base digest; "" for compressed), so a thousand devices on the same base cost one encode.
Encoding takes seconds for a few hundred KB in Python, so it runs on the builder's worker thread, never
on the MQTT network thread or the API event loop; the rollout driver keeps a device queued until its variants
exist (or failed, in which case the raw package goes). Packages signed offline are sent as uploaded: the
server cannot sign on their key's behalf.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from tinyfleet.server.db import session_scope
from tinyfleet.server.models import Device, DeviceAction, Package, PackageBlob, PackageVariant
from tinyfleet.server.services.ids import new_id
from tinyfleet.server.services.signer import ServerKeys
from tinyfleet.signing import delta
from tinyfleet.signing.errors import SigningError
from tinyfleet.signing.manifest import MANIFEST_SIZE, parse_unverified
from tinyfleet.signing.package import build_package

log = logging.getLogger(__name__)

NO_BASE = ""  # base_sha256 of the compressed variant


@dataclass(frozen=True)
class Choice:
    """What one device is sent: a package id (the package itself or a variant), its size and encoding."""

    package_id: str
    size: int
    encoding: int
    raw_size: int
    base_sha256: str = NO_BASE


def can_vary(pkg: Package, keys: ServerKeys | None) -> bool:
    """Only raw packages this server signed (with its current key) can be re-signed as variants."""
    return (
        keys is not None
        and pkg.signed_by == "server"
        and pkg.payload_encoding == 0
        and pkg.key_id == keys.key_id_hex
    )


def _model_from_package(pkg: Package, data: bytes) -> bytes | None:
    payload = data[MANIFEST_SIZE:]
    if pkg.payload_encoding not in (0, 1):
        return None
    try:
        model = payload if pkg.payload_encoding == 0 else delta.decode(payload)
    except delta.DeltaError:
        return None
    if hashlib.sha256(model).hexdigest() != pkg.model_sha256:
        return None
    return model


def base_known(session: Session, model_sha256: str) -> bool:
    """The server holds this model's bytes (a raw or compressed package of it), so it can delta against it."""
    stmt = select(Package.id).where(
        Package.model_sha256 == model_sha256, col(Package.payload_encoding).in_((0, 1))
    )
    return session.exec(stmt).first() is not None


def model_bytes(session: Session, model_sha256: str) -> bytes | None:
    """The bytes of a model the server registered (from any package that carries it whole)."""
    stmt = select(Package).where(
        Package.model_sha256 == model_sha256, col(Package.payload_encoding).in_((0, 1))
    )
    for pkg in session.exec(stmt.order_by(col(Package.payload_encoding))):
        blob = session.get(PackageBlob, pkg.id)
        model = _model_from_package(pkg, bytes(blob.data)) if blob is not None else None
        if model is not None:
            return model
    return None


def wanted_bases(session: Session, pkg: Package, device_base: str | None) -> list[str]:
    """Variant keys worth having for a device: compressed always, a delta when the server knows the
    device's active model (and it is not already the target)."""
    bases = [NO_BASE]
    if device_base and device_base != pkg.model_sha256 and base_known(session, device_base):
        bases.append(device_base)
    return bases


def choose(
    session: Session, pkg: Package, device_base: str | None, keys: ServerKeys | None
) -> tuple[Choice | None, list[str]]:
    """The smallest of raw and the ready variants for a device whose active model is `device_base`.
    Returns (choice, []) or (None, bases still to build)."""
    raw = Choice(pkg.id, pkg.size, 0, pkg.size)
    if not can_vary(pkg, keys):
        return raw, []
    bases = wanted_bases(session, pkg, device_base)
    rows = {
        v.base_sha256: v
        for v in session.exec(
            select(PackageVariant).where(
                PackageVariant.source_package_id == pkg.id, col(PackageVariant.base_sha256).in_(bases)
            )
        )
    }
    missing = [b for b in bases if b not in rows]
    if missing:
        return None, missing
    best = raw
    for v in rows.values():
        if v.status == "ready" and v.size < best.size:
            best = Choice(v.id, v.size, v.payload_encoding, pkg.size, v.base_sha256)
    return best, []


@dataclass(frozen=True)
class _Inputs:
    pkg_id: str
    model: bytes
    base: bytes | None
    package: bytes


def _read_inputs(session: Session, source_id: str, base_sha256: str) -> _Inputs | str:
    pkg = session.get(Package, source_id)
    blob = session.get(PackageBlob, source_id)
    if pkg is None or blob is None:
        return f"package {source_id} has no stored bytes"
    data = bytes(blob.data)
    model = _model_from_package(pkg, data)
    if model is None:
        return f"package {source_id} does not carry its model whole"
    base = None
    if base_sha256:
        base = model_bytes(session, base_sha256)
        if base is None:
            return f"the server does not hold the base model {base_sha256[:16]}"
    return _Inputs(pkg.id, model, base, data)


def _encode(inputs: _Inputs, base_sha256: str, keys: ServerKeys) -> bytes:
    """Re-sign the source package's manifest with the encoded payload (the slow part: no database)."""
    old = parse_unverified(inputs.package)
    payload = delta.encode(inputs.model, inputs.base or b"")
    return build_package(
        inputs.model,
        keys.private_key,
        name=old.model_name,
        version=old.version,
        sequence=old.sequence,
        security_counter=old.security_counter,
        hardware_class=old.hardware_class,
        min_runtime_version=old.min_runtime_version,
        arena_bytes=old.arena_bytes,
        selftest_seed=old.selftest_seed,
        selftest_output_sha256=old.selftest_output_sha256 if old.selftest_seed else None,
        payload=payload,
        payload_encoding=2 if base_sha256 else 1,
        delta_base_sha256=bytes.fromhex(base_sha256) if base_sha256 else None,
        created_at=old.created_at,
    )


def _row(source_id: str, base_sha256: str, data: bytes | None, error: str) -> PackageVariant:
    return PackageVariant(
        id=new_id("pkv", 8),
        source_package_id=source_id,
        base_sha256=base_sha256,
        payload_encoding=2 if base_sha256 else 1,
        status="ready" if data is not None else "failed",
        error=error[:500],
        size=len(data) if data is not None else 0,
        sha256=hashlib.sha256(data).hexdigest() if data is not None else "",
        data=data,
        created_at=time.time(),
    )


def _exists(session: Session, source_id: str, base_sha256: str) -> bool:
    stmt = select(PackageVariant.id).where(
        PackageVariant.source_package_id == source_id, PackageVariant.base_sha256 == base_sha256
    )
    return session.exec(stmt).first() is not None


def _encode_or_error(inputs: _Inputs | str, base_sha256: str, keys: ServerKeys) -> tuple[bytes | None, str]:
    if isinstance(inputs, str):
        return None, inputs
    try:
        return _encode(inputs, base_sha256, keys), ""
    except (SigningError, ValueError) as exc:
        return None, f"cannot build the variant: {exc}"


def build_in_session(session: Session, keys: ServerKeys, source_id: str, base_sha256: str) -> None:
    """Build one variant inside the caller's transaction (used when no worker thread runs)."""
    if _exists(session, source_id, base_sha256):
        return
    data, error = _encode_or_error(_read_inputs(session, source_id, base_sha256), base_sha256, keys)
    session.add(_row(source_id, base_sha256, data, error))
    session.flush()


class VariantBuilder:
    """One worker thread that builds requested variants in order; duplicate requests are merged."""

    def __init__(self, db: Engine, keys: ServerKeys, on_ready: Callable[[], None] | None = None) -> None:
        self._db = db
        self.keys = keys
        self.on_ready = on_ready or (lambda: None)
        self._queue: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._pending: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.built = 0  # variants this process encoded (the cache makes later devices free)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="tinyfleet-variants", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)
            self._thread = None

    def request(self, source_id: str, base_sha256: str) -> None:
        key = (source_id, base_sha256)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._queue.put(key)

    def prepare_rollout(self, rollout_id: int) -> int:
        """Ask for every variant the rollout's queued devices will need (called when it starts, so that
        the first wave rarely waits). Returns how many builds were requested."""
        n = 0
        with Session(self._db) as session:
            actions = session.exec(
                select(DeviceAction).where(
                    DeviceAction.rollout_id == rollout_id, DeviceAction.state == "queued"
                )
            )
            seen: set[tuple[str, str]] = set()
            for a in actions:
                pkg = session.get(Package, a.package_id) if a.package_id else None
                device = session.get(Device, a.device_id)
                if pkg is None or device is None or not can_vary(pkg, self.keys):
                    continue
                for base in wanted_bases(session, pkg, device.active_model_sha256):
                    if (pkg.id, base) not in seen:
                        seen.add((pkg.id, base))
                        self.request(pkg.id, base)
                        n += 1
        return n

    def build(self, source_id: str, base_sha256: str) -> None:
        """Read inputs, encode outside any transaction, store (a concurrent duplicate is harmless)."""
        with Session(self._db) as session:
            if _exists(session, source_id, base_sha256):
                return
            inputs = _read_inputs(session, source_id, base_sha256)
        data, error = _encode_or_error(inputs, base_sha256, self.keys)
        try:
            with session_scope(self._db) as session:
                if not _exists(session, source_id, base_sha256):
                    session.add(_row(source_id, base_sha256, data, error))
        except IntegrityError:
            return
        self.built += 1
        if error:
            log.warning("variant of %s for base %s: %s", source_id, base_sha256[:16] or "-", error)

    def run_pending(self) -> int:
        """Build everything queued now, in this thread (tests, or a server without background threads)."""
        n = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return n
            if item is not None:
                self._build_logged(item)
                n += 1

    def _build_logged(self, key: tuple[str, str]) -> None:
        try:
            self.build(*key)
        except Exception:  # a database hiccup: forget the request so the driver asks again
            log.exception("building variant %s failed", key)
        finally:
            with self._lock:
                self._pending.discard(key)
        self.on_ready()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._build_logged(item)
