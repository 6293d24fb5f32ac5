"""Packages: `manifest (292 bytes) || payload` (docs/PROTOCOL.md section 1). Build, verify, inspect."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyfleet.signing import manifest as mf
from tinyfleet.signing.errors import DigestMismatch, FieldOutOfRange, SizeMismatch
from tinyfleet.signing.keys import TrustStore, key_id
from tinyfleet.signing.manifest import MANIFEST_SIZE, Manifest
from tinyfleet.signing.tflite import estimate_arena_bytes, parse_model


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def build_package(
    model: bytes,
    private_key: Ed25519PrivateKey,
    *,
    name: str,
    version: str | tuple[int, int, int],
    sequence: int,
    security_counter: int,
    hardware_class: int,
    min_runtime_version: str | int,
    arena_bytes: int | None = None,
    selftest_seed: int = 0,
    selftest_output_sha256: bytes | None = None,
    payload: bytes | None = None,
    payload_encoding: int = mf.ENC_RAW,
    delta_base_sha256: bytes | None = None,
    created_at: int | None = None,
) -> bytes:
    """Sign a package for `model` (the .tflite as installed). For raw packages the payload is the model;
    compressed or delta packages pass the encoded `payload` and its `payload_encoding`."""
    info = parse_model(model)
    if payload_encoding == mf.ENC_RAW:
        if payload is not None and payload != model:
            raise FieldOutOfRange("a raw package's payload must be the model itself")
        payload = model
    elif payload is None:
        raise FieldOutOfRange(f"payload_encoding {payload_encoding} needs the encoded payload")
    if (payload_encoding == mf.ENC_DELTA) != (delta_base_sha256 is not None):
        raise FieldOutOfRange("delta_base_sha256 is given exactly for delta payloads (encoding 2)")
    if selftest_seed and selftest_output_sha256 is None:
        raise FieldOutOfRange("a self-test seed needs the expected output SHA-256")
    if not selftest_seed and selftest_output_sha256 is not None:
        raise FieldOutOfRange("an expected self-test output needs a non-zero seed")
    try:
        ver = mf.parse_semver(version) if isinstance(version, str) else version
        runtime = mf.runtime_version_int(min_runtime_version)
    except ValueError as exc:
        raise FieldOutOfRange(str(exc)) from None
    manifest = Manifest(
        model_name=name,
        version=ver,
        sequence=sequence,
        security_counter=security_counter,
        hardware_class=hardware_class,
        min_runtime_version=runtime,
        payload_encoding=payload_encoding,
        payload_size=len(payload),
        payload_sha256=sha256(payload),
        model_size=len(model),
        model_sha256=sha256(model),
        delta_base_sha256=delta_base_sha256 or mf.ZERO32,
        arena_bytes=estimate_arena_bytes(info) if arena_bytes is None else arena_bytes,
        selftest_seed=selftest_seed,
        selftest_output_sha256=selftest_output_sha256 or mf.ZERO32,
        created_at=int(time.time()) if created_at is None else created_at,
        key_id=key_id(private_key),
    )
    return mf.sign(manifest, private_key) + payload


@dataclass(frozen=True)
class VerifiedPackage:
    manifest: Manifest
    payload: bytes


def verify_package(data: bytes, trust_store: TrustStore) -> VerifiedPackage:
    """Authenticate a whole package: manifest checks in PROTOCOL order, then total size, then the
    payload digest (for raw packages that is also the model digest, by the range rules)."""
    data = bytes(data)
    manifest = mf.parse(data, trust_store)
    expected = MANIFEST_SIZE + manifest.payload_size
    if len(data) != expected:
        raise SizeMismatch(f"package is {len(data)} bytes; the manifest says {expected}")
    payload = data[MANIFEST_SIZE:]
    if sha256(payload) != manifest.payload_sha256:
        raise DigestMismatch("payload SHA-256 does not match the manifest")
    return VerifiedPackage(manifest, payload)


@dataclass(frozen=True)
class Inspection:
    """What `inspect` can tell without trusting anything: the decoded fields and plain facts."""

    manifest: Manifest
    file_size: int
    size_ok: bool
    payload_digest_ok: bool
    range_error: str | None  # the field range rule the manifest breaks, if any


def inspect(data: bytes) -> Inspection:
    data = bytes(data)
    manifest = mf.parse_unverified(data)
    range_error = None
    try:
        mf.check_ranges(data)
    except FieldOutOfRange as exc:
        range_error = str(exc)
    size_ok = len(data) == MANIFEST_SIZE + manifest.payload_size
    return Inspection(
        manifest=manifest,
        file_size=len(data),
        size_ok=size_ok,
        payload_digest_ok=size_ok and sha256(data[MANIFEST_SIZE:]) == manifest.payload_sha256,
        range_error=range_error,
    )
