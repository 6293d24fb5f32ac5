"""The host kernels (agent_firmware/core/engine/kernels_*_host.c, issue 15's host speed target) against
the reference kernels and TFLM.

They are the host library's default (`Engine(model)`, what simulated devices and the server run), so
the differential suites (test_engine_differential.py, test_engine_ops_differential.py, test_engine_tflm.py)
already compare them with TFLM on every generated model. Here: the shared TFLM models against the
reference kernels, the generated conv/depthwise/FC/mixed/autoencoder models and the extra shapes of
test_engine_dsp.py (depthwise multipliers 4..13 on one channel, wide convolutions) against both, the
arena equal to the reference's, and FC weight zero points the TensorFlow models never have.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support import engine_dsp_models as dsp
from tests.support.engine_differential import DEFAULT, ensure_models
from tests.support.paths import REPO
from tinyfleet.device.engine import Engine


@pytest.fixture(scope="module")
def host_lib() -> None:
    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)


def compare(model: bytes, runs: int, tflm: bool) -> None:
    """Host kernels == reference kernels (== TFLM when tflm) on `runs` inputs, byte for byte."""
    ref = Engine(model, kernels="reference")
    host = Engine(model, kernels="host")
    assert host.arena_used == ref.arena_used  # the host kernels take no arena
    interp = None
    if tflm:
        from tflite_micro.python.tflite_micro import runtime

        interp = runtime.Interpreter.from_bytes(model)
    rng = np.random.default_rng(16)
    for run in range(runs):
        for i, x in enumerate(dsp.int8_inputs(ref, rng, run)):
            ref.set_input(i, x)
            host.set_input(i, x)
            if interp is not None:
                interp.set_input(x, i)
        ref.invoke()
        host.invoke()
        if interp is not None:
            interp.invoke()
        for o in range(ref.output_count):
            assert host.output_bytes(o) == ref.output_bytes(o), f"run {run} output {o}: host != reference"
            if interp is not None:
                assert host.output_bytes(o) == interp.get_output(o).tobytes(), (
                    f"run {run} output {o}: host != TFLM"
                )


@pytest.mark.parametrize("name", dsp.SHARED)
def test_shared_models_host_equals_reference(host_lib: None, shared_models: Path, name: str) -> None:
    model = (shared_models / f"{name}.tflite").read_bytes()
    compare(model, runs=4 if name == "person_detect" else 30, tflm=False)
    assert Engine(model, kernels="host").selftest_digest(7) == Engine(
        model, kernels="reference"
    ).selftest_digest(7)


def test_host_kernels_are_the_default(host_lib: None, shared_models: Path) -> None:
    model = (shared_models / "micro_speech_quantized.tflite").read_bytes()
    x = np.random.default_rng(3).integers(-128, 128, size=(1, 1960), dtype=np.int8)
    outputs = []
    for engine in (Engine(model), Engine(model, kernels="host"), Engine(model, kernels="reference")):
        engine.set_input(0, x)
        engine.invoke()
        outputs.append(engine.output_bytes(0))
    assert outputs[0] == outputs[1] == outputs[2]
    with pytest.raises(ValueError, match="kernels must be one of"):
        Engine(model, kernels="fast")


@pytest.mark.parametrize("name", dsp.GENERATED)
def test_generated_models_host_bit_exact(host_lib: None, name: str) -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    pytest.importorskip("tensorflow")
    cache = ensure_models(DEFAULT, jobs=2)
    compare((cache / f"{name}.tflite").read_bytes(), runs=60, tflm=True)


@pytest.mark.parametrize("name", dsp.EXTRA)
def test_extra_shapes_host_bit_exact(host_lib: None, name: str) -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    pytest.importorskip("tensorflow")
    cache = dsp.ensure_extra_models(dsp.EXTRA)
    compare((cache / f"{name}.tflite").read_bytes(), runs=40, tflm=True)


@pytest.mark.parametrize("zero_point", [-7, 5, 127])
def test_fc_weight_zero_point_host_equals_reference(
    host_lib: None, shared_models: Path, zero_point: int
) -> None:
    models = [(shared_models / "hello_world_int8.tflite").read_bytes()]
    models += [(shared_models / "micro_speech_quantized.tflite").read_bytes()]
    for model in models:
        compare(dsp.with_fc_weight_zero_point(model, zero_point), runs=30, tflm=False)
