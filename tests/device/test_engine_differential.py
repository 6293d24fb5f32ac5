"""Differential testing of the C engine against TFLM on randomly generated int8 models (issue 15).

The models (`family-seed`, built by TensorFlow from the name alone and cached under
build/engine-differential/) and the comparison are in tests/support/engine_differential.py. The default
run compares a few dozen models; the `slow` sweep a few dozen more of every family, and
bench/engine_differential.py many more.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.engine_differential import (
    DEFAULT,
    SWEEP,
    Difference,
    compare,
    ensure_models,
    runs_for,
)
from tests.support.paths import REPO
from tinyfleet.signing.codes import ErrorCode


@pytest.fixture(scope="module")
def prepared() -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    pytest.importorskip("tensorflow")
    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)


@pytest.mark.parametrize("name", DEFAULT)
def test_random_model_bit_exact(prepared: None, name: str) -> None:
    cache = ensure_models(DEFAULT, jobs=2)
    found = compare(name, (cache / f"{name}.tflite").read_bytes(), runs=runs_for(name, 300))
    assert not found, found[:3]


@pytest.mark.slow
def test_random_model_sweep_bit_exact(prepared: None) -> None:
    cache = ensure_models(SWEEP, jobs=2)
    from tinyfleet.device.engine import EngineError

    found: list[Difference] = []
    refused = []
    for name in SWEEP:
        try:
            found += compare(name, (cache / f"{name}.tflite").read_bytes(), runs=runs_for(name, 200))
        except EngineError as e:
            # a ReLU'd sum never positive in calibration gets an output scale ~1e-8: its multiplier
            # overflows, TFLM aborts in prepare and the engine refuses the model
            assert e.code == ErrorCode.MODEL_INVALID and name.startswith("binary-"), (name, e)
            refused.append(name)
    assert not found, found[:5]
    assert len(refused) <= max(1, len(SWEEP) // 50), refused  # rare: at most one in this sweep


def test_generator_covers_the_op_families(prepared: None) -> None:
    from tinyfleet.device.engine import Engine

    cache = ensure_models(DEFAULT, jobs=2)
    ops: set[str] = set()
    for name in DEFAULT:
        ops |= set(Engine((cache / f"{name}.tflite").read_bytes()).op_names())
    expected = {
        "FULLY_CONNECTED",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "MAX_POOL_2D",
        "AVERAGE_POOL_2D",
        "ADD",
        "MUL",
    }
    assert expected <= ops


@pytest.mark.slow  # rebuilds models with TensorFlow in child processes
def test_models_are_deterministic(prepared: None, tmp_path: Path) -> None:
    cache = ensure_models(DEFAULT, jobs=2)
    ensure_models(["fc-0", "binary-1"], cache=tmp_path)
    for name in ("fc-0", "binary-1"):
        assert (tmp_path / f"{name}.tflite").read_bytes() == (cache / f"{name}.tflite").read_bytes()
