"""Encrypted payloads (docs/PROTOCOL.md section 6): ChaCha20 content encryption, X25519 key wrap per device.

A package with manifest `flags` bit 0 set carries `payload XOR ChaCha20(content_key, nonce 0, counter 0)`.
The 32-byte content key reaches one device as an 80-byte wrap, `eph_pub || wrapped || tag`, that only the
holder of that device's X25519 private key can open, and that is bound to one signed manifest by its tag.
The C runtime (agent_firmware/core/src/key_unwrap.c) implements the same unwrap, checked against shared
vectors made from this module.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import replace

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tinyfleet.signing import manifest as mf
from tinyfleet.signing.errors import KeyUnwrap, PackageError

WRAP_SIZE = 80
CONTENT_KEY_SIZE = 32
FLAG_ENCRYPTED = 1
KEY_SIZE = 32  # X25519 private and public keys
TAG_SIZE = 16
NONCE_SIZE = 12
BLOCK_SIZE = 64
HKDF_INFO = b"tinyfleet content key v1"

_RAW = serialization.Encoding.Raw


class EncryptionError(ValueError):
    """A key, wrap or package cannot be used for encryption; one line, for users."""


class KeyUnwrapError(EncryptionError, KeyUnwrap):
    """A wrap does not open (wrong device key, other manifest, altered bytes, zero shared secret):
    code KEY_UNWRAP (9), as the device reports it."""


def _need(value: bytes, size: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != size:
        got = len(value) if isinstance(value, bytes | bytearray | memoryview) else type(value).__name__
        raise EncryptionError(f"{what} must be {size} bytes, got {got}")
    return bytes(value)


def generate_device_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair for one device: (private 32 bytes, public 32 bytes)."""
    private = X25519PrivateKey.generate()
    return (
        private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
        private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw),
    )


def public_key_of(device_private: bytes) -> bytes:
    """The X25519 public key (base point times the clamped private key)."""
    private = X25519PrivateKey.from_private_bytes(_need(device_private, KEY_SIZE, "device private key"))
    return private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw)


def x25519(scalar: bytes, u: bytes) -> bytes:
    """RFC 7748 X25519(scalar, u); refuses an all-zero result (a low-order `u`)."""
    private = X25519PrivateKey.from_private_bytes(_need(scalar, KEY_SIZE, "X25519 scalar"))
    peer = X25519PublicKey.from_public_bytes(_need(u, KEY_SIZE, "X25519 u-coordinate"))
    try:
        shared = private.exchange(peer)
    except ValueError:
        # OpenSSL refuses the all-zero output itself; report it the same way as the check below.
        raise KeyUnwrapError("X25519 shared secret is zero (low-order public key)") from None
    if not any(shared):
        raise KeyUnwrapError("X25519 shared secret is zero (low-order public key)")
    return shared


def new_content_key() -> bytes:
    """32 fresh random bytes: one per package, never reused."""
    return os.urandom(CONTENT_KEY_SIZE)


def chacha20_xor(key: bytes, data: bytes, nonce: bytes = bytes(NONCE_SIZE), counter: int = 0) -> bytes:
    """`data` XOR the RFC 8439 ChaCha20 key stream from block `counter` (encrypts and decrypts)."""
    key = _need(key, CONTENT_KEY_SIZE, "ChaCha20 key")
    nonce = _need(nonce, NONCE_SIZE, "ChaCha20 nonce")
    blocks = (len(data) + BLOCK_SIZE - 1) // BLOCK_SIZE
    if counter < 0 or counter + blocks > 1 << 32:
        raise EncryptionError("ChaCha20 block counter would pass 2^32")
    # cryptography's 16-byte nonce is the RFC 8439 state words 12..15: counter (LE) then the nonce.
    cipher = Cipher(algorithms.ChaCha20(key, counter.to_bytes(4, "little") + nonce), mode=None)
    enc = cipher.encryptor()
    return enc.update(bytes(data)) + enc.finalize()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(bytes(key), bytes(data), hashlib.sha256).digest()


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256 (extract then expand)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=bytes(salt), info=bytes(info)).derive(
        bytes(ikm)
    )


def _keys(shared: bytes, eph_pub: bytes, device_pub: bytes) -> tuple[bytes, bytes]:
    okm = hkdf_sha256(eph_pub + device_pub, shared, HKDF_INFO, 64)
    return okm[:32], okm[32:]


def _tag(mac_key: bytes, wrapped: bytes, manifest: bytes) -> bytes:
    return hmac_sha256(mac_key, wrapped + hashlib.sha256(manifest).digest())[:TAG_SIZE]


def _manifest_bytes(manifest: bytes) -> bytes:
    return _need(manifest, mf.MANIFEST_SIZE, "the signed manifest")


def wrap_content_key_with(
    content_key: bytes, device_public: bytes, manifest: bytes, ephemeral_private: bytes
) -> bytes:
    """`wrap_content_key` with a given ephemeral key: only for reproducible test vectors."""
    content_key = _need(content_key, CONTENT_KEY_SIZE, "content key")
    device_public = _need(device_public, KEY_SIZE, "device public key")
    manifest = _manifest_bytes(manifest)
    eph_pub = public_key_of(ephemeral_private)
    try:
        shared = x25519(ephemeral_private, device_public)
    except KeyUnwrapError:
        raise EncryptionError("device public key is of low order; it cannot receive a key") from None
    kek, mac_key = _keys(shared, eph_pub, device_public)
    wrapped = bytes(a ^ b for a, b in zip(content_key, kek, strict=True))
    return eph_pub + wrapped + _tag(mac_key, wrapped, manifest)


def wrap_content_key(content_key: bytes, device_public: bytes, manifest: bytes) -> bytes:
    """The 80-byte wrap of `content_key` for one device and one signed manifest (its 292 bytes)."""
    ephemeral = X25519PrivateKey.generate().private_bytes(
        _RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return wrap_content_key_with(content_key, device_public, manifest, ephemeral)


def unwrap_content_key(wrap: bytes, device_private: bytes, manifest: bytes) -> bytes:
    """Open a wrap with the device's private key; raises EncryptionError (code KEY_UNWRAP) when its tag
    does not match (another device, another manifest, altered bytes) or the shared secret is zero."""
    wrap = _need(wrap, WRAP_SIZE, "a content key wrap")
    device_private = _need(device_private, KEY_SIZE, "device private key")
    manifest = _manifest_bytes(manifest)
    eph_pub, wrapped, tag = wrap[:32], wrap[32:64], wrap[64:]
    shared = x25519(device_private, eph_pub)
    kek, mac_key = _keys(shared, eph_pub, public_key_of(device_private))
    if not hmac.compare_digest(_tag(mac_key, wrapped, manifest), tag):
        raise KeyUnwrapError("content key wrap does not open: wrong device key, manifest or wrap bytes")
    return bytes(a ^ b for a, b in zip(wrapped, kek, strict=True))


def is_encrypted(manifest: mf.Manifest) -> bool:
    return bool(manifest.flags & FLAG_ENCRYPTED)


def encrypt_package(package: bytes, content_key: bytes, sign: Ed25519PrivateKey) -> bytes:
    """Re-sign a clear package (raw, compressed or delta) with `flags` bit 0 set and its payload
    encrypted under `content_key`; every other field (sequence, version, model digest...) is kept.
    `sign` is the Ed25519 signing key, as for `build_package`."""
    content_key = _need(content_key, CONTENT_KEY_SIZE, "content key")
    package = bytes(package)
    try:
        manifest = mf.parse_unverified(package)
        mf.check_ranges(package)
    except PackageError as exc:
        raise EncryptionError(f"not a valid package: {exc}") from None
    if is_encrypted(manifest):
        raise EncryptionError("the package is already encrypted")
    payload = package[mf.MANIFEST_SIZE :]
    if len(payload) != manifest.payload_size or hashlib.sha256(payload).digest() != manifest.payload_sha256:
        raise EncryptionError("the package's payload does not match its manifest")
    ciphertext = chacha20_xor(content_key, payload)
    encrypted = replace(
        manifest,
        flags=manifest.flags | FLAG_ENCRYPTED,
        payload_sha256=hashlib.sha256(ciphertext).digest(),
    )
    return mf.sign(encrypted, sign) + ciphertext


def decrypt_payload(package: bytes, content_key: bytes) -> bytes:
    """The clear payload (the encoding 0/1/2 stream) of an encrypted package; the caller has verified
    the package. A clear package's payload is returned as it is."""
    package = bytes(package)
    manifest = mf.parse_unverified(package)
    payload = package[mf.MANIFEST_SIZE :]
    if not is_encrypted(manifest):
        return payload
    return chacha20_xor(_need(content_key, CONTENT_KEY_SIZE, "content key"), payload)
