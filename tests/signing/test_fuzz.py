"""Hypothesis fuzzing: parsers refuse garbage only with the library's own errors (never a crash)."""

from __future__ import annotations

import contextlib
import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.paths import VECTORS
from tinyfleet.signing import errors
from tinyfleet.signing import manifest as mf
from tinyfleet.signing.keys import TrustStore, private_key_from_seed
from tinyfleet.signing.package import build_package, inspect, verify_package
from tinyfleet.signing.tflite import estimate_arena_bytes, parse_model

MODEL = (VECTORS / "model.tflite").read_bytes()
KEY = private_key_from_seed(hashlib.sha256(b"fuzz key").digest())
STORE = TrustStore([KEY])
PACKAGE = build_package(
    MODEL,
    KEY,
    name="fuzz",
    version="0.0.1",
    sequence=1,
    security_counter=0,
    hardware_class=1,
    min_runtime_version=0,
    created_at=0,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutate(base: bytes, edits: list[tuple[int, int]], cut: int | None, extra: bytes) -> bytes:
    data = bytearray(base)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    return bytes(data) + extra


edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8)
cuts = st.none() | st.integers(0, 1 << 20)


@FUZZ
@given(st.binary(max_size=600))
def test_parse_random_bytes(data: bytes) -> None:
    with contextlib.suppress(errors.PackageError):
        mf.parse(data, STORE)


@FUZZ
@given(edits, cuts, st.binary(max_size=4))
def test_verify_mutated_package(e: list[tuple[int, int]], cut: int | None, extra: bytes) -> None:
    data = mutate(PACKAGE, e, cut, extra)
    try:
        verified = verify_package(data, STORE)
    except errors.PackageError:
        return
    assert verified.payload == data[mf.MANIFEST_SIZE :]  # only an unchanged package can pass
    assert data == PACKAGE


@FUZZ
@given(edits, cuts, st.binary(max_size=4))
def test_inspect_mutated_package(e: list[tuple[int, int]], cut: int | None, extra: bytes) -> None:
    with contextlib.suppress(errors.PackageError):
        inspect(mutate(PACKAGE, e, cut, extra))


@FUZZ
@given(st.binary(max_size=300))
def test_tflite_random_bytes(data: bytes) -> None:
    with contextlib.suppress(errors.InvalidModelError):
        parse_model(b"\x10\x00\x00\x00TFL3" + data)


@FUZZ
@given(edits, cuts)
def test_tflite_mutated_model(e: list[tuple[int, int]], cut: int | None) -> None:
    with contextlib.suppress(errors.InvalidModelError):
        estimate_arena_bytes(mutate(MODEL, e, cut, b""))
