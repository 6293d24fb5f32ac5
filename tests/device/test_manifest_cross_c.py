"""Python and the C runtime's manifest parser refuse the same bytes with the same code.

Uses the host library built by `make -C agent_firmware` (skips when it is not built).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import random

import pytest

from tests.support.paths import REPO
from tinyfleet.signing import manifest as mf
from tinyfleet.signing.errors import PackageError
from tinyfleet.signing.keys import TrustStore, key_id, load_public_key, private_key_from_seed, public_raw

LIBRARY = REPO / "agent_firmware" / "build" / "host" / "libtinyfleet_agent.so"
VECTORS = REPO / "tests" / "vectors"

pytestmark = pytest.mark.skipif(not LIBRARY.exists(), reason=f"C host library not built ({LIBRARY})")


class TrustedKey(ctypes.Structure):
    _fields_ = [("key_id", ctypes.c_uint8 * 8), ("public_key", ctypes.c_uint8 * 32)]


class CParser:
    def __init__(self, public_key: bytes) -> None:
        self.lib = ctypes.CDLL(str(LIBRARY))
        self.lib.tfa_manifest_parse.restype = ctypes.c_int
        self.key = TrustedKey((ctypes.c_uint8 * 8)(*key_id(public_key)), (ctypes.c_uint8 * 32)(*public_key))
        self.out = ctypes.create_string_buffer(4096)  # larger than tfa_manifest_t

    def parse(self, data: bytes) -> int:
        buf = (ctypes.c_uint8 * max(len(data), 1))(*data)
        return -int(self.lib.tfa_manifest_parse(buf, len(data), ctypes.byref(self.key), 1, self.out))

    def package(self, data: bytes) -> int:
        """The parse layer of tests/vectors/README.md: manifest, then total size, then payload digest."""
        code = self.parse(data)
        if code:
            return code
        if len(data) != mf.MANIFEST_SIZE + int.from_bytes(data[68:72], "little"):
            return 7
        return 0 if hashlib.sha256(data[mf.MANIFEST_SIZE :]).digest() == data[72:104] else 6


PUBLIC = public_raw(load_public_key(VECTORS / "key_trusted.pub"))
STORE = TrustStore([PUBLIC])


def python_code(data: bytes) -> int:
    try:
        mf.parse(data, STORE)
    except PackageError as exc:
        return exc.code
    return 0


def test_vectors_agree_with_the_c_parser() -> None:
    parser = CParser(PUBLIC)
    index = json.loads((VECTORS / "index.json").read_text())
    for vector in index["vectors"]:
        expected = vector["code"] if vector["layer"] == "parse" else 0
        assert parser.package((VECTORS / vector["file"]).read_bytes()) == expected, vector["file"]


def test_mutated_manifests_agree_with_the_c_parser() -> None:
    parser = CParser(PUBLIC)
    key = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: trusted").digest())
    good = (VECTORS / "good.tfpkg").read_bytes()[: mf.MANIFEST_SIZE]
    rng = random.Random(20261125)
    for _ in range(1500):
        data = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.7:  # re-sign, so that the field range rules are reached
            data = bytearray(mf.sign_body(bytes(data[: mf.SIGNED_SIZE]), key))
        if rng.random() < 0.1:
            data = data[: rng.randrange(len(data))]
        assert parser.parse(bytes(data)) == python_code(bytes(data)), bytes(data).hex()


def test_encrypted_flag_agrees_with_the_c_parser() -> None:
    """flags bit 0 (PROTOCOL 6): other bits refused, the raw digest rule relaxed only with the flag."""
    parser = CParser(PUBLIC)
    key = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: trusted").digest())
    good = (VECTORS / "good.tfpkg").read_bytes()[: mf.SIGNED_SIZE]
    flags_at = mf.OFFSETS["flags"][0]
    digest_at = mf.OFFSETS["payload_sha256"][0]
    size_at = mf.OFFSETS["payload_size"][0]
    seen = set()
    for flags in (0, 1, 2, 3, 0x80, 0x81, 0xFF):
        for digest in (None, bytes(32), hashlib.sha256(b"ciphertext").digest()):
            for size_delta in (0, 1):
                body = bytearray(good)
                body[flags_at] = flags
                if digest is not None:
                    body[digest_at : digest_at + 32] = digest
                size = int.from_bytes(body[size_at : size_at + 4], "little") + size_delta
                body[size_at : size_at + 4] = size.to_bytes(4, "little")
                data = mf.sign_body(bytes(body), key)
                code = python_code(data)
                assert parser.parse(data) == code, (flags, digest, size_delta)
                seen.add(code)
                want_ok = flags in (0, 1) and size_delta == 0 and (flags == 1 or digest is None)
                assert (code == 0) == want_ok, (flags, digest, size_delta, code)
    assert seen == {0, 8}
