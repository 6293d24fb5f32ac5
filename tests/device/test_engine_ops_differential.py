"""Differential testing of the ops added for issue 15's next models (SQUEEZE, SPLIT, STRIDED_SLICE, ...)
against TFLM on randomly generated int8 models (tests/support/engine_op_models.py), and their arena
against TFLM's. bench/engine_differential_ops.py runs many more.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.support.engine_differential import compare
from tests.support.engine_op_models import (
    ELEMENTWISE,
    FAMILY_OP,
    ensure_models,
    model_names,
    whole_range_differs,
)
from tests.support.paths import REPO
from tests.support.tflm_arena import tflm_arena_bytes


@pytest.fixture(scope="module")
def prepared() -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    pytest.importorskip("tensorflow")
    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)


DEFAULT = model_names(8)
SWEEP = model_names(40, first_seed=100)


@pytest.mark.parametrize("name", DEFAULT)
def test_random_op_model_bit_exact(prepared: None, name: str) -> None:
    from tinyfleet.device.engine import Engine

    cache = ensure_models(DEFAULT, jobs=2)
    path = cache / f"{name}.tflite"
    model = path.read_bytes()
    assert FAMILY_OP[name.rsplit("-", 1)[0]] in Engine(model).op_names()
    found = compare(name, model, runs=200)
    assert not found, found[:3]
    assert Engine(model).arena_used <= tflm_arena_bytes(path)


@pytest.mark.parametrize("name", [n for n in DEFAULT if n.rsplit("-", 1)[0] in ELEMENTWISE])
def test_elementwise_whole_int8_range(prepared: None, name: str) -> None:
    cache = ensure_models(DEFAULT, jobs=2)
    assert whole_range_differs((cache / f"{name}.tflite").read_bytes()) == []


@pytest.mark.slow
def test_random_op_model_sweep_bit_exact(prepared: None) -> None:
    from tinyfleet.device.engine import EngineError

    cache = ensure_models(SWEEP, jobs=2)
    found: list[object] = []
    refused = []
    for name in SWEEP:
        try:
            found += compare(name, (cache / f"{name}.tflite").read_bytes(), runs=100)
        except EngineError as exc:
            # The converter sometimes leaves an activation as its own op (e.g. RELU after TRANSPOSE_CONV),
            # which the engine does not run: a clear refusal, never one of the ops under test.
            assert "UNSUPPORTED_OP: RELU" in str(exc), (name, str(exc))
            refused.append(name)
    assert not found, found[:5]
    assert len(refused) <= len(SWEEP) // 10, refused
