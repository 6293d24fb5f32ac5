"""The delta format's golden vectors and example models, shared by the tests of each format version
(tests/signing/test_delta_*.py): where they are, the generator that makes them, and the check that
malformed streams raise DeltaError only."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.support.paths import REPO
from tinyfleet.signing import delta

VECTORS = REPO / "agent_firmware" / "tests" / "vectors" / "delta"
V1_MODEL = (REPO / "examples" / "vibration-1.0.0.tflite").read_bytes()
V2_MODEL = (REPO / "examples" / "vibration-1.1.0.tflite").read_bytes()


def generator() -> ModuleType:
    """agent_firmware/tests/make_delta_vectors.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "mdv", REPO / "agent_firmware" / "tests" / "make_delta_vectors.py"
    )
    assert spec is not None and spec.loader is not None
    mdv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mdv)
    return mdv


def assert_malformed_raise_delta_error_only(name: str, base: bytes) -> None:
    """Every 7th byte of the golden stream `name` flipped: DeltaError, or some model of the right size (an
    undetected flip); every 97th truncation: DeltaError."""
    good = (VECTORS / name).read_bytes()
    for at in range(0, len(good), 7):
        bad = bytearray(good)
        bad[at] ^= 0x5A
        try:
            out = delta.decode(bytes(bad), base)
        except delta.DeltaError:
            continue
        assert len(out) > 0
    for cut in range(0, len(good), 97):
        with pytest.raises(delta.DeltaError):
            delta.decode(good[:cut], base)
