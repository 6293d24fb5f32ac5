"""The signed manifest, format version 1 (docs/PROTOCOL.md section 1.1): 228 signed bytes + signature.

`parse` applies the checks in the documented order, so that Python and the C runtime refuse the same
bytes with the same error: length >= 8, magic, format (version and header size), length >= 292, key id
known, signature, then field ranges. Nothing is trusted before the signature has been checked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyfleet.signing.errors import (
    BadMagic,
    BadSignature,
    FieldOutOfRange,
    Truncated,
    UnknownKey,
    UnsupportedFormat,
)
from tinyfleet.signing.keys import TrustStore
from tinyfleet.signing.keys import key_id as compute_key_id

MAGIC = b"TFMF"
FORMAT_VERSION = 1
MANIFEST_SIZE = 292
SIGNED_SIZE = 228
SIGNATURE_OFFSET = 228
KEY_ID_OFFSET = 220
NAME_SIZE = 32
MAX_NAME_BYTES = NAME_SIZE - 1
MAX_SIZE = 1 << 31  # payload_size and model_size are 1..2^31

ENC_RAW = 0
ENC_COMPRESSED = 1
ENC_DELTA = 2
ENCODING_NAMES = {ENC_RAW: "raw", ENC_COMPRESSED: "compressed", ENC_DELTA: "delta"}

ZERO32 = bytes(32)
FLAG_ENCRYPTED = 1  # payload is ChaCha20-encrypted (PROTOCOL section 6); other flag bits stay 0

# Signed part, offsets 0..227, in field order of the PROTOCOL table.
_SIGNED = struct.Struct("<4sHH32s4HIIIIBBHI32sI32s32sII32sQ8s")
assert _SIGNED.size == SIGNED_SIZE

# Field offsets, for tools that patch single fields (test vectors, fuzzing) and for error messages.
OFFSETS: dict[str, tuple[int, int]] = {
    "magic": (0, 4),
    "format_version": (4, 2),
    "header_size": (6, 2),
    "model_name": (8, 32),
    "version_major": (40, 2),
    "version_minor": (42, 2),
    "version_patch": (44, 2),
    "reserved0": (46, 2),
    "sequence": (48, 4),
    "security_counter": (52, 4),
    "hardware_class": (56, 4),
    "min_runtime_version": (60, 4),
    "payload_encoding": (64, 1),
    "flags": (65, 1),
    "reserved1": (66, 2),
    "payload_size": (68, 4),
    "payload_sha256": (72, 32),
    "model_size": (104, 4),
    "model_sha256": (108, 32),
    "delta_base_sha256": (140, 32),
    "arena_bytes": (172, 4),
    "selftest_seed": (176, 4),
    "selftest_output_sha256": (180, 32),
    "created_at": (212, 8),
    "key_id": (220, 8),
    "signature": (228, 64),
}


def parse_semver(text: str, *, limit: int = 0xFFFF) -> tuple[int, int, int]:
    """'1.2.3' -> (1, 2, 3); each part a decimal integer in 0..limit."""
    parts = text.strip().split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ValueError(f"version {text!r} is not MAJOR.MINOR.PATCH")
    nums = (int(parts[0]), int(parts[1]), int(parts[2]))
    if any(n > limit for n in nums):
        raise ValueError(f"version {text!r}: each part must be at most {limit}")
    return nums


def format_semver(version: tuple[int, int, int]) -> str:
    return f"{version[0]}.{version[1]}.{version[2]}"


def runtime_version_int(version: str | int | tuple[int, int, int]) -> int:
    """The u32 `major<<16 | minor<<8 | patch` form of a runtime version."""
    if isinstance(version, int):
        if not 0 <= version <= 0xFFFFFFFF:
            raise ValueError(f"runtime version {version} does not fit in 32 bits")
        return version
    major, minor, patch = parse_semver(version) if isinstance(version, str) else version
    if major > 0xFFFF or minor > 0xFF or patch > 0xFF:
        raise ValueError("runtime version: major <= 65535, minor and patch <= 255")
    return (major << 16) | (minor << 8) | patch


def runtime_version_str(value: int) -> str:
    return f"{value >> 16}.{(value >> 8) & 0xFF}.{value & 0xFF}"


@dataclass(frozen=True)
class Manifest:
    """Every field of a format-1 manifest. `key_id` and `signature` are filled in by `sign`."""

    model_name: str
    version: tuple[int, int, int]
    sequence: int
    security_counter: int
    hardware_class: int
    min_runtime_version: int
    payload_encoding: int
    payload_size: int
    payload_sha256: bytes
    model_size: int
    model_sha256: bytes
    delta_base_sha256: bytes = ZERO32
    arena_bytes: int = 0
    selftest_seed: int = 0
    selftest_output_sha256: bytes = ZERO32
    created_at: int = 0
    key_id: bytes = bytes(8)
    signature: bytes = bytes(64)
    flags: int = 0
    reserved0: int = 0
    reserved1: int = 0
    format_version: int = FORMAT_VERSION
    header_size: int = MANIFEST_SIZE

    @property
    def version_str(self) -> str:
        return format_semver(self.version)

    @property
    def min_runtime_str(self) -> str:
        return runtime_version_str(self.min_runtime_version)

    @property
    def encoding_name(self) -> str:
        return ENCODING_NAMES.get(self.payload_encoding, f"unknown ({self.payload_encoding})")


def _name_field(name: str) -> bytes:
    raw = name.encode("utf-8")
    if not 1 <= len(raw) <= MAX_NAME_BYTES or b"\0" in raw:
        raise FieldOutOfRange(f"model_name must be 1..{MAX_NAME_BYTES} UTF-8 bytes without NUL: {name!r}")
    return raw.ljust(NAME_SIZE, b"\0")


def encode(m: Manifest) -> bytes:
    """The 228 signed bytes of `m`. Refuses (FieldOutOfRange) a manifest that `parse` would refuse."""
    body = _pack(m)
    _check_ranges(body)
    return body


def _pack(m: Manifest) -> bytes:
    if (m.format_version, m.header_size) != (FORMAT_VERSION, MANIFEST_SIZE):
        raise UnsupportedFormat(
            f"this library writes format {FORMAT_VERSION} ({MANIFEST_SIZE}-byte) manifests"
        )
    for label, digest in (
        ("payload_sha256", m.payload_sha256),
        ("model_sha256", m.model_sha256),
        ("delta_base_sha256", m.delta_base_sha256),
        ("selftest_output_sha256", m.selftest_output_sha256),
    ):
        if len(digest) != 32:
            raise FieldOutOfRange(f"{label} must be 32 bytes, got {len(digest)}")
    if len(m.key_id) != 8:
        raise FieldOutOfRange(f"key_id must be 8 bytes, got {len(m.key_id)}")
    try:
        return _SIGNED.pack(
            MAGIC,
            m.format_version,
            m.header_size,
            _name_field(m.model_name),
            *m.version,
            m.reserved0,
            m.sequence,
            m.security_counter,
            m.hardware_class,
            m.min_runtime_version,
            m.payload_encoding,
            m.flags,
            m.reserved1,
            m.payload_size,
            m.payload_sha256,
            m.model_size,
            m.model_sha256,
            m.delta_base_sha256,
            m.arena_bytes,
            m.selftest_seed,
            m.selftest_output_sha256,
            m.created_at,
            m.key_id,
        )
    except struct.error as exc:
        raise FieldOutOfRange(f"a manifest field does not fit its size: {exc}") from None


def sign_body(body: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """Append the Ed25519 signature to 228 signed bytes, as they are (no checks: for test vectors)."""
    if len(body) != SIGNED_SIZE:
        raise ValueError(f"the signed part of a manifest is {SIGNED_SIZE} bytes, got {len(body)}")
    return body + private_key.sign(body)


def sign(m: Manifest, private_key: Ed25519PrivateKey) -> bytes:
    """The 292-byte signed manifest; its key_id is set from the signing key."""
    body = encode(replace(m, key_id=compute_key_id(private_key)))
    return sign_body(body, private_key)


def _check_header(buf: bytes) -> None:
    if len(buf) < 8:
        raise Truncated(f"{len(buf)} bytes; a manifest starts with 8 header bytes")
    if buf[:4] != MAGIC:
        raise BadMagic(f"starts with {buf[:4].hex()}, not 'TFMF'; not a tinyfleet package")
    fmt, header_size = struct.unpack_from("<HH", buf, 4)
    if fmt != FORMAT_VERSION:
        raise UnsupportedFormat(
            f"manifest format version {fmt}; this verifier knows version {FORMAT_VERSION}"
        )
    if header_size != MANIFEST_SIZE:
        raise UnsupportedFormat(
            f"header_size {header_size}; format {FORMAT_VERSION} manifests are {MANIFEST_SIZE}"
        )
    if len(buf) < MANIFEST_SIZE:
        raise Truncated(f"{len(buf)} bytes; a manifest is {MANIFEST_SIZE} bytes")


def _check_ranges(body: bytes) -> None:
    """The range rules of PROTOCOL 1.1 on the signed bytes; raises FieldOutOfRange on the first broken."""
    f = _SIGNED.unpack_from(body, 0)
    name_field: bytes = f[3]
    (reserved0, enc, flags, reserved1) = (f[7], f[12], f[13], f[14])
    payload_size, payload_sha, model_size, model_sha, delta_base = f[15], f[16], f[17], f[18], f[19]
    seed, selftest_sha = f[21], f[22]

    name_len = name_field.find(b"\0")
    if name_len <= 0:
        raise FieldOutOfRange("model_name is empty" if name_len == 0 else "model_name is not NUL-terminated")
    if any(name_field[name_len:]):
        raise FieldOutOfRange("model_name is not NUL-padded (bytes after the terminating NUL)")
    try:
        name_field[:name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise FieldOutOfRange("model_name is not valid UTF-8") from None
    if reserved0 or reserved1:
        raise FieldOutOfRange("reserved fields must be 0")
    if flags & ~FLAG_ENCRYPTED:
        raise FieldOutOfRange(f"flags bits other than 0 (encrypted) must be 0, got {flags:#x}")
    if enc > ENC_DELTA:
        raise FieldOutOfRange(f"payload_encoding {enc} is not 0 (raw), 1 (compressed) or 2 (delta)")
    if not 1 <= payload_size <= MAX_SIZE:
        raise FieldOutOfRange(f"payload_size {payload_size} not in 1..2^31")
    if not 1 <= model_size <= MAX_SIZE:
        raise FieldOutOfRange(f"model_size {model_size} not in 1..2^31")
    if (enc == ENC_DELTA) != (delta_base != ZERO32):
        raise FieldOutOfRange("delta_base_sha256 must be non-zero exactly for delta payloads")
    if seed == 0 and selftest_sha != ZERO32:
        raise FieldOutOfRange("selftest_output_sha256 must be zero when selftest_seed is 0")
    # An encrypted raw payload is the model's ciphertext: same size, but its digest differs.
    if enc == ENC_RAW and (
        payload_size != model_size or (not flags & FLAG_ENCRYPTED and payload_sha != model_sha)
    ):
        raise FieldOutOfRange("a raw payload must be the model itself (same size and SHA-256)")


def _decode(buf: bytes) -> Manifest:
    f = _SIGNED.unpack_from(buf, 0)
    name_field: bytes = f[3]
    name = name_field.split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return Manifest(
        model_name=name,
        version=(f[4], f[5], f[6]),
        reserved0=f[7],
        sequence=f[8],
        security_counter=f[9],
        hardware_class=f[10],
        min_runtime_version=f[11],
        payload_encoding=f[12],
        flags=f[13],
        reserved1=f[14],
        payload_size=f[15],
        payload_sha256=f[16],
        model_size=f[17],
        model_sha256=f[18],
        delta_base_sha256=f[19],
        arena_bytes=f[20],
        selftest_seed=f[21],
        selftest_output_sha256=f[22],
        created_at=f[23],
        key_id=f[24],
        signature=bytes(buf[SIGNATURE_OFFSET:MANIFEST_SIZE]),
        format_version=f[1],
        header_size=f[2],
    )


def parse(buf: bytes, trust_store: TrustStore) -> Manifest:
    """Authenticate and decode the manifest at the start of `buf` (a manifest or a whole package)."""
    buf = bytes(buf)
    _check_header(buf)
    kid = buf[KEY_ID_OFFSET : KEY_ID_OFFSET + 8]
    trusted = trust_store.get(kid)
    if trusted is None:
        raise UnknownKey(f"signed with key id {kid.hex()}, which is not in the trust store")
    body = buf[:SIGNED_SIZE]
    if not trusted.verify(buf[SIGNATURE_OFFSET:MANIFEST_SIZE], body):
        raise BadSignature(f"Ed25519 signature does not verify with key {kid.hex()}")
    _check_ranges(body)
    return _decode(buf)


def parse_unverified(buf: bytes) -> Manifest:
    """Decode without checking the signature or the field ranges (for `inspect` only: trust nothing)."""
    buf = bytes(buf)
    _check_header(buf)
    return _decode(buf)


def check_ranges(buf: bytes) -> None:
    """Field range rules alone, on a manifest whose header is already known to be complete."""
    _check_header(bytes(buf))
    _check_ranges(bytes(buf[:SIGNED_SIZE]))
