"""The C runtime's SHA-256 and SHA-512 (host library, via ctypes) against hashlib: one-shot and
incremental with the input split at every boundary, for every length 0..300 and for larger inputs."""

from __future__ import annotations

import ctypes
import hashlib
import random
import secrets
from collections.abc import Callable, Iterator

import pytest

from tests.support.paths import REPO
from tinyfleet.device.library import load_library

FIRMWARE = REPO / "agent_firmware"


class Sha256Ctx(ctypes.Structure):
    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("total_len", ctypes.c_uint64),
        ("block", ctypes.c_uint8 * 64),
        ("block_len", ctypes.c_uint32),
    ]


class Sha512Ctx(ctypes.Structure):
    _fields_ = [
        ("h", ctypes.c_uint64 * 8),
        ("total_len", ctypes.c_uint64),
        ("block", ctypes.c_uint8 * 128),
        ("block_len", ctypes.c_uint32),
    ]


class CHash:
    """One of the C hashes with hashlib's shape: update() any number of times, then digest()."""

    def __init__(self, lib: ctypes.CDLL, bits: int) -> None:
        self.lib, self.bits = lib, bits
        self.ctx: ctypes.Structure = Sha256Ctx() if bits == 256 else Sha512Ctx()
        getattr(lib, f"tfa_sha{bits}_init")(ctypes.byref(self.ctx))

    def update(self, data: bytes) -> None:
        update = getattr(self.lib, f"tfa_sha{self.bits}_update")
        update(ctypes.byref(self.ctx), data, ctypes.c_size_t(len(data)))

    def digest(self) -> bytes:
        out = ctypes.create_string_buffer(self.bits // 8)
        getattr(self.lib, f"tfa_sha{self.bits}_final")(ctypes.byref(self.ctx), out)
        return out.raw


@pytest.fixture(scope="session")
def host_lib() -> Iterator[ctypes.CDLL]:
    yield load_library()  # built by make when missing or stale


def one_shot(lib: ctypes.CDLL, bits: int, data: bytes) -> bytes:
    out = ctypes.create_string_buffer(bits // 8)
    getattr(lib, f"tfa_sha{bits}")(data, ctypes.c_size_t(len(data)), out)
    return out.raw


REFERENCE: dict[int, Callable[[bytes], bytes]] = {
    256: lambda data: hashlib.sha256(data).digest(),
    512: lambda data: hashlib.sha512(data).digest(),
}


@pytest.mark.parametrize("bits", [256, 512])
def test_fips_examples(host_lib: ctypes.CDLL, bits: int) -> None:
    for msg in (b"", b"abc", b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", b"a" * 1_000_000):
        assert one_shot(host_lib, bits, msg) == REFERENCE[bits](msg), len(msg)


@pytest.mark.parametrize("bits", [256, 512])
def test_every_length_one_shot(host_lib: ctypes.CDLL, bits: int) -> None:
    rng = random.Random(secrets.randbits(32))
    for length in range(301):
        msg = rng.randbytes(length)
        assert one_shot(host_lib, bits, msg) == REFERENCE[bits](msg), length


@pytest.mark.parametrize("bits", [256, 512])
def test_update_split_at_every_boundary(host_lib: ctypes.CDLL, bits: int) -> None:
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    block = bits // 4  # 64 or 128 bytes
    lengths = {0, 1, block - 9, block - 8, block - 1, block, block + 1, 2 * block, 2 * block + 7, 300}
    lengths |= {rng.randint(0, 300) for _ in range(10)}
    for length in sorted(lengths):
        msg = rng.randbytes(length)
        want = REFERENCE[bits](msg)
        for split in range(length + 1):
            h = CHash(host_lib, bits)
            h.update(msg[:split])
            h.update(b"")
            h.update(msg[split:])
            assert h.digest() == want, f"seed={seed} length={length} split={split}"


@pytest.mark.parametrize("bits", [256, 512])
def test_random_chunking_of_large_inputs(host_lib: ctypes.CDLL, bits: int) -> None:
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    msg = rng.randbytes(200_003)
    h = CHash(host_lib, bits)
    pos = 0
    while pos < len(msg):
        step = rng.choice([1, 3, 63, 64, 65, 127, 128, 129, 1000, 4096])
        h.update(msg[pos : pos + step])
        pos += step
    assert h.digest() == REFERENCE[bits](msg), f"seed={seed}"
