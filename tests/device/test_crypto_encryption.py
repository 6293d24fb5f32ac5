"""The C runtime's payload encryption (host library via tinyfleet.device.crypto) against the Python module
tinyfleet.signing.encryption: random inputs (hypothesis), the shared vector file, and the generator check."""

from __future__ import annotations

import hashlib
import subprocess
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.device_frames import install, new_device, package, state
from tests.support.paths import REPO
from tinyfleet.device import crypto as dev
from tinyfleet.signing import encryption as enc
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.keys import private_key_from_seed

FIRMWARE = REPO / "agent_firmware"
GENERATOR = FIRMWARE / "tests" / "make_encryption_vectors.py"
VECTOR_FILE = FIRMWARE / "tests" / "vectors" / "encryption.txt"
CROSS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

key32 = st.binary(min_size=32, max_size=32)


@CROSS
@given(scalar=key32, u=key32)
def test_x25519_matches(scalar: bytes, u: bytes) -> None:
    try:
        want: bytes | None = enc.x25519(scalar, u)
    except enc.EncryptionError:
        want = None
    assert dev.x25519(scalar, u) == want


@CROSS
@given(scalar=key32)
def test_public_key_matches(scalar: bytes) -> None:
    assert dev.x25519_base(scalar) == enc.public_key_of(scalar)


@CROSS
@given(
    key=key32,
    nonce=st.binary(min_size=12, max_size=12),
    counter=st.integers(0, 1000),
    data=st.binary(max_size=600),
    cuts=st.lists(st.integers(0, 600), max_size=4),
    resume=st.integers(0, 600),
)
def test_chacha20_streaming_and_seek_match(
    key: bytes, nonce: bytes, counter: int, data: bytes, cuts: list[int], resume: int
) -> None:
    want = enc.chacha20_xor(key, data, nonce, counter)
    stream = dev.ChaCha20(key, nonce, counter)
    bounds = sorted(c % (len(data) + 1) for c in cuts)
    got = b""
    for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True):
        got += stream.xor(data[a:b])
    assert got == want
    at = resume % (len(data) + 1)
    fresh = dev.ChaCha20(key, nonce, counter)
    fresh.seek(at)
    assert fresh.xor(data[at:]) == want[at:]


def test_chacha20_end_of_counter() -> None:
    key = bytes(range(32))
    last = dev.ChaCha20(key, counter=(1 << 32) - 1)
    assert last.xor(bytes(64)) == enc.chacha20_xor(key, bytes(64), counter=(1 << 32) - 1)
    try:
        last.xor(b"\0")
    except dev.DeviceCryptoError as exc:
        assert "2^32" in str(exc)
    else:
        raise AssertionError("the C side went past the last block")


@CROSS
@given(key=st.binary(max_size=200), data=st.binary(max_size=400))
def test_hmac_matches(key: bytes, data: bytes) -> None:
    assert dev.hmac_sha256(key, data) == enc.hmac_sha256(key, data)


@CROSS
@given(
    salt=st.binary(max_size=100),
    ikm=st.binary(max_size=100),
    info=st.binary(max_size=100),
    length=st.integers(1, 255 * 32),
)
def test_hkdf_matches(salt: bytes, ikm: bytes, info: bytes, length: int) -> None:
    assert dev.hkdf_sha256(salt, ikm, info, length) == enc.hkdf_sha256(salt, ikm, info, length)


@CROSS
@given(
    content_key=key32,
    manifest=st.binary(min_size=292, max_size=292),
    flip=st.one_of(st.none(), st.integers(0, 80 * 8 - 1)),
)
def test_key_unwrap_matches(content_key: bytes, manifest: bytes, flip: int | None) -> None:
    device, public = enc.generate_device_keypair()
    wrap = enc.wrap_content_key(content_key, public, manifest)
    if flip is None:
        assert dev.key_unwrap(wrap, device, manifest) == content_key
        return
    bad = bytearray(wrap)
    bad[flip // 8] ^= 1 << (flip % 8)
    py_refused = c_refused = False
    try:
        enc.unwrap_content_key(bytes(bad), device, manifest)
    except enc.EncryptionError:
        py_refused = True
    try:
        dev.key_unwrap(bytes(bad), device, manifest)
    except dev.DeviceCryptoError as exc:
        assert "KEY_UNWRAP" in str(exc)
        c_refused = True
    # A flipped bit 255 of eph_pub is ignored by X25519 but changes the HKDF salt: refused all the same.
    assert py_refused and c_refused


def hexf(field: str) -> bytes:
    return b"" if field == "-" else bytes.fromhex(field)


def test_vector_file_lines_match_the_c_side() -> None:
    """Every line of the shared file, through the host library (the ASan test does the same in C)."""
    counts: dict[str, int] = {}
    for line in VECTOR_FILE.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, *f = line.split()
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "x25519":
            assert dev.x25519(hexf(f[0]), hexf(f[1])) == (None if f[2] == "zero" else hexf(f[2]))
        elif kind == "chacha20":
            assert dev.ChaCha20(hexf(f[0]), hexf(f[1]), int(f[2])).xor(hexf(f[3])) == hexf(f[4])
        elif kind == "hmac":
            assert dev.hmac_sha256(hexf(f[0]), hexf(f[1])) == hexf(f[2])
        elif kind == "hkdf":
            assert dev.hkdf_sha256(hexf(f[0]), hexf(f[1]), hexf(f[2]), int(f[3])) == hexf(f[4])
        else:
            assert kind == "unwrap", line[:40]
            wrap, device, manifest = hexf(f[3]), hexf(f[0]), hexf(f[2])
            if f[4] != "KEY_UNWRAP":
                assert dev.key_unwrap(wrap, device, manifest) == hexf(f[4])
                continue
            try:
                dev.key_unwrap(wrap, device, manifest)
            except dev.DeviceCryptoError:
                continue
            raise AssertionError(f"a refused wrap opened: {line[:80]}")
    assert counts.get("x25519", 0) >= 200 and counts.get("unwrap", 0) >= 200 and len(counts) == 5


def test_committed_vectors_are_what_the_generator_makes() -> None:
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr


def test_runtime_refuses_an_encrypted_package_before_writing() -> None:
    """A device given no X25519 key refuses a validly signed encrypted package at INSTALL_BEGIN
    (KEY_UNWRAP), not found out later (installs with a key: tests/device/test_encrypted_install.py)."""
    signer = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: trusted").digest())
    clear = package("good.tfpkg")
    sealed = enc.encrypt_package(clear, enc.new_content_key(), signer)
    with new_device() as device:
        assert install(device, sealed) == ErrorCode.KEY_UNWRAP
        assert state(device).phase.name == "IDLE"
        assert install(device, clear) == 0
