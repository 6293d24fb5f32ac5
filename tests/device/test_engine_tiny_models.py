"""MLPerf-Tiny-shaped models (issue 15): the FC autoencoder, ResNet-8 and DS-CNN of
tests/support/tiny_models.py, narrowed and on smaller inputs, with random weights (two seeds each). The
engine's outputs equal TFLM's byte for byte with the reference kernels, the optimized (Cortex-M4 DSP,
instructions emulated in C) and the host kernels, and its arena is not above TFLM's with either kernel
set.

The full-size models run on the M4 in `bench/inference_m4.py --tiny` (trial self-test against TFLM's
digest); docs/BENCHMARKS.md, "Issue 15: MLPerf-Tiny-shaped models on the M4".
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.paths import REPO
from tests.support.tflm_arena import tflm_arena_bytes
from tinyfleet.device.engine import Engine

pytest.importorskip("tensorflow")
runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

from tests.support.tiny_models import SMALL, ensure  # noqa: E402  (needs TensorFlow in the child process)

RUNS = 40


@pytest.fixture(scope="module")
def models() -> dict[str, Path]:
    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)
    return ensure(SMALL)


@pytest.mark.parametrize("name", SMALL)
def test_tiny_model_bit_exact_with_tflm(models: dict[str, Path], name: str) -> None:
    model = models[name].read_bytes()
    engines = {
        "reference": Engine(model, kernels="reference"),
        "optimized": Engine(model, optimized=True),
        "host": Engine(model),
    }
    interp = runtime.Interpreter.from_bytes(model)
    info = engines["reference"].input_info(0)
    rng = np.random.default_rng(15)
    for run in range(RUNS):
        # runs 0 and 1 saturate the input at both ends (every accumulator at its extreme)
        x = (
            np.full(info.shape, -128 if run == 0 else 127, np.int8)
            if run < 2
            else rng.integers(-128, 128, size=info.shape, dtype=np.int8)
        )
        interp.set_input(x, 0)
        interp.invoke()
        theirs = np.ascontiguousarray(interp.get_output(0)).tobytes()
        for kind, engine in engines.items():
            engine.set_input(0, x)
            engine.invoke()
            assert engine.output_bytes(0) == theirs, f"{name} run {run}: {kind} kernels != TFLM"


@pytest.mark.parametrize("name", SMALL[:3])  # the seeds share shapes, hence arenas
def test_tiny_model_arena_not_above_tflm(models: dict[str, Path], name: str) -> None:
    model = models[name].read_bytes()
    bound = tflm_arena_bytes(models[name])
    assert Engine(model, kernels="reference").arena_used <= bound
    assert Engine(model, optimized=True).arena_used <= bound
