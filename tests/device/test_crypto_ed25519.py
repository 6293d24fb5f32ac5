"""The C runtime's Ed25519 verifier (host library, via ctypes) against `cryptography`.

Fresh random keys and messages every run (the seed is printed in failure messages), the RFC 8032
vectors, the strictness edge cases, and a check that the committed vector files and the generated
base-point table are exactly what the generator produces. The host library is built with
`make -C agent_firmware host` when it is missing or stale.
"""

from __future__ import annotations

import ctypes
import random
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.paths import REPO
from tinyfleet.device.library import load_library

FIRMWARE = REPO / "agent_firmware"
VECTORS = FIRMWARE / "tests" / "vectors"
GENERATOR = FIRMWARE / "tests" / "make_crypto_vectors.py"
L = 2**252 + 27742317777372353535851937790883648493


@pytest.fixture(scope="session")
def host_lib() -> Iterator[ctypes.CDLL]:
    lib = load_library()  # built by make when missing or stale
    lib.tfa_ed25519_verify.restype = ctypes.c_int
    lib.tfa_ed25519_verify.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    yield lib


def c_verify(lib: ctypes.CDLL, sig: bytes, pk: bytes, msg: bytes) -> bool:
    assert len(sig) == 64 and len(pk) == 32
    rc = lib.tfa_ed25519_verify(sig, pk, msg, len(msg))
    assert rc in (0, -1), f"verify returned {rc}"
    return bool(rc == 0)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_fresh_random_signatures_and_bit_flips(host_lib: ctypes.CDLL) -> None:
    seed = secrets.randbits(64)
    rng = random.Random(seed)
    for i in range(1000):
        key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        pk = public_raw(key)
        msg = rng.randbytes(rng.randint(0, 256))
        sig = key.sign(msg)
        where = f"seed={seed} i={i}"
        assert c_verify(host_lib, sig, pk, msg), f"valid signature rejected ({where})"
        if msg:
            assert not c_verify(host_lib, sig, pk, flip_bit(msg, rng.randrange(8 * len(msg)))), where
        else:
            assert not c_verify(host_lib, sig, pk, b"\x00"), where
        assert not c_verify(host_lib, flip_bit(sig, rng.randrange(512)), pk, msg), where
        assert not c_verify(host_lib, sig, flip_bit(pk, rng.randrange(256)), msg), where


def test_every_signature_bit_matters(host_lib: ctypes.CDLL) -> None:
    key = Ed25519PrivateKey.generate()
    pk = public_raw(key)
    msg = b"every bit of the signature and the key is checked"
    sig = key.sign(msg)
    for bit in range(512):
        assert not c_verify(host_lib, flip_bit(sig, bit), pk, msg), f"sig bit {bit}"
    for bit in range(256):
        assert not c_verify(host_lib, sig, flip_bit(pk, bit), msg), f"pk bit {bit}"


def test_non_canonical_s_is_rejected(host_lib: ctypes.CDLL) -> None:
    for _ in range(50):
        key = Ed25519PrivateKey.generate()
        pk = public_raw(key)
        msg = secrets.token_bytes(40)
        sig = key.sign(msg)
        s = int.from_bytes(sig[32:], "little")
        assert c_verify(host_lib, sig, pk, msg)
        # S + L passes the group equation; only the range check stops it.
        assert not c_verify(host_lib, sig[:32] + (s + L).to_bytes(32, "little"), pk, msg)


def read_vectors(name: str) -> list[list[str]]:
    rows = []
    for line in (VECTORS / name).read_text().splitlines():
        if line and not line.startswith("#"):
            rows.append(line.split())
    return rows


def unhex(field: str) -> bytes:
    return b"" if field == "-" else bytes.fromhex(field)


def test_rfc8032_vectors(host_lib: ctypes.CDLL) -> None:
    rows = read_vectors("ed25519_rfc8032.txt")
    assert [row[0] for row in rows] == ["TEST_1", "TEST_2", "TEST_3", "TEST_1024", "TEST_SHA_abc"]
    for name, pk, sig, msg in rows:
        assert c_verify(host_lib, unhex(sig), unhex(pk), unhex(msg)), name
        assert not c_verify(host_lib, unhex(sig), unhex(pk), unhex(msg) + b"\x00"), name


def test_strictness_edge_cases(host_lib: ctypes.CDLL) -> None:
    rows = read_vectors("ed25519_edge.txt")
    assert len(rows) >= 30
    for expect, name, pk, sig, msg in rows:
        assert c_verify(host_lib, unhex(sig), unhex(pk), unhex(msg)) == (expect == "1"), name


def test_committed_vectors_and_table_are_reproducible() -> None:
    proc = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
