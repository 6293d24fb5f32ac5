"""The C runtime's payload encryption primitives (PROTOCOL section 6), called through the host library.

For cross-checks against tinyfleet.signing.encryption and for tools that want the device's exact answer:
X25519, ChaCha20 (with the runtime's streaming and seek), HMAC-SHA256, HKDF-SHA256 and `tfa_key_unwrap`.
Every call checks its argument sizes here, since C trusts them.
"""

from __future__ import annotations

import ctypes

from tinyfleet.device.library import declare, load_library
from tinyfleet.signing.codes import ErrorCode

WRAP_SIZE = 80
MANIFEST_SIZE = 292

_u8p = ctypes.c_char_p
_size = ctypes.c_size_t


# tfa_chacha20_ctx (tfa/chacha20.h, 144 bytes) is opaque here: only C reads or writes it, so Python
# gives it 8-byte aligned room to spare instead of mirroring its fields.
_CHACHA_CTX_WORDS = 32


class DeviceCryptoError(ValueError):
    """A call the C side refused, or arguments of the wrong size."""


def _lib() -> ctypes.CDLL:
    lib = load_library()
    declare(
        lib,
        {
            "tfa_x25519": ([_u8p, _u8p, _u8p], ctypes.c_int),
            "tfa_x25519_base": ([_u8p, _u8p], None),
            "tfa_chacha20_init": ([ctypes.c_void_p, _u8p, _u8p, ctypes.c_uint32], None),
            "tfa_chacha20_seek": ([ctypes.c_void_p, ctypes.c_uint64], ctypes.c_int),
            "tfa_chacha20_xor": ([ctypes.c_void_p, ctypes.c_void_p, _u8p, _size], ctypes.c_int),
            "tfa_hmac_sha256": ([_u8p, _size, _u8p, _size, ctypes.c_void_p], None),
            "tfa_hkdf_sha256": (
                [ctypes.c_void_p, _size, _u8p, _size, _u8p, _size, _u8p, _size],
                ctypes.c_int,
            ),
            "tfa_key_unwrap": ([ctypes.c_void_p, _u8p, _u8p, _u8p, _u8p], ctypes.c_int),
        },
    )
    return lib


def _need(value: bytes, size: int, what: str) -> bytes:
    if len(value) != size:
        raise DeviceCryptoError(f"{what} must be {size} bytes, got {len(value)}")
    return bytes(value)


def x25519(scalar: bytes, u: bytes) -> bytes | None:
    """X25519(scalar, u), or None when the C side refuses an all-zero result."""
    out = ctypes.create_string_buffer(32)
    rc = _lib().tfa_x25519(out, _need(scalar, 32, "scalar"), _need(u, 32, "u"))
    return None if rc != 0 else out.raw


def x25519_base(scalar: bytes) -> bytes:
    out = ctypes.create_string_buffer(32)
    _lib().tfa_x25519_base(out, _need(scalar, 32, "scalar"))
    return out.raw


class ChaCha20:
    """A streaming ChaCha20 context on the C side: `xor` continues the key stream, `seek` moves it."""

    def __init__(self, key: bytes, nonce: bytes = bytes(12), counter: int = 0) -> None:
        self._ctx = (ctypes.c_uint64 * _CHACHA_CTX_WORDS)()
        _lib().tfa_chacha20_init(
            ctypes.byref(self._ctx), _need(key, 32, "key"), _need(nonce, 12, "nonce"), counter
        )

    def seek(self, offset: int) -> None:
        if _lib().tfa_chacha20_seek(ctypes.byref(self._ctx), offset) != 0:
            raise DeviceCryptoError(f"offset {offset} is past the end of the key stream")

    def xor(self, data: bytes) -> bytes:
        out = ctypes.create_string_buffer(max(len(data), 1))
        if _lib().tfa_chacha20_xor(ctypes.byref(self._ctx), out, bytes(data), len(data)) != 0:
            raise DeviceCryptoError("the ChaCha20 block counter would pass 2^32")
        return out.raw[: len(data)]


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    out = ctypes.create_string_buffer(32)
    _lib().tfa_hmac_sha256(bytes(key), len(key), bytes(data), len(data), out)
    return out.raw


def hkdf_sha256(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    out = ctypes.create_string_buffer(max(length, 1))
    rc = _lib().tfa_hkdf_sha256(
        out, length, bytes(salt), len(salt), bytes(ikm), len(ikm), bytes(info), len(info)
    )
    if rc != 0:
        raise DeviceCryptoError(f"HKDF-SHA256 output of {length} bytes is above 255 * 32")
    return out.raw[:length]


def key_unwrap(wrap: bytes, device_private: bytes, manifest: bytes) -> bytes:
    """The content key, as the device would open it; DeviceCryptoError naming KEY_UNWRAP on refusal."""
    lib = _lib()
    device_private = _need(device_private, 32, "device private key")
    public = x25519_base(device_private)
    out = ctypes.create_string_buffer(32)
    rc = lib.tfa_key_unwrap(
        out,
        _need(wrap, WRAP_SIZE, "wrap"),
        device_private,
        public,
        _need(manifest, MANIFEST_SIZE, "manifest"),
    )
    if rc != 0:
        raise DeviceCryptoError(f"{ErrorCode(-rc).name}: the wrap does not open")
    return out.raw
