"""The optimized (Cortex-M4 DSP) kernels, run on the host with their instructions emulated in portable C,
against the reference kernels and TFLM (issue 15).

`Engine(model, optimized=True)` takes the same code path as the M4 (kernels_conv_dsp.c, kernels_dw_dsp.c,
kernels_fc_dsp.c); only the DSP instructions themselves are C functions (dsp.h). Models: the shared TFLM
models, and the random single-op-family models of the differential generator (CONV_2D, DEPTHWISE_CONV_2D with
multipliers 1..3 and input depths 1..8, FC chains, mixed chains, the autoencoder) with random inputs, and
extra shapes (depthwise with multipliers 2..13 on input depths 1..8, windows up to 10x8, wide
convolutions). The M4 itself is checked by tests/sim/test_qemu_engine.py and bench/inference_m4.py
(self-test digest)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support import engine_differential as differential
from tests.support.engine_differential import DEFAULT, ensure_models
from tests.support.engine_dsp_models import (
    EXTRA,
    GENERATED,
    SHARED,
    ensure_extra_models,
    int8_inputs,
    with_depthwise_requantization,
    with_fc_weight_zero_point,
)
from tests.support.paths import REPO
from tests.support.tflm_arena import tflm_arena_bytes
from tinyfleet.device.engine import Engine


@pytest.fixture(scope="module")
def host_lib() -> None:
    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)


def compare(model: bytes, runs: int, tflm: bool) -> None:
    """Optimized kernels == reference kernels (== TFLM when tflm) on `runs` inputs, byte for byte."""
    ref = Engine(model, kernels="reference")
    opt = Engine(model, optimized=True)
    interp = None
    if tflm:
        from tflite_micro.python.tflite_micro import runtime

        interp = runtime.Interpreter.from_bytes(model)
    rng = np.random.default_rng(15)
    for run in range(runs):
        for i, x in enumerate(int8_inputs(ref, rng, run)):
            ref.set_input(i, x)
            opt.set_input(i, x)
            if interp is not None:
                interp.set_input(x, i)
        ref.invoke()
        opt.invoke()
        if interp is not None:
            interp.invoke()
        for o in range(ref.output_count):
            assert opt.output_bytes(o) == ref.output_bytes(o), f"run {run} output {o}: optimized != reference"
            if interp is not None:
                theirs = interp.get_output(o).tobytes()
                assert opt.output_bytes(o) == theirs, f"run {run} output {o}: optimized != TFLM"


@pytest.mark.parametrize("name", SHARED)
def test_shared_models_optimized_equals_reference(host_lib: None, shared_models: Path, name: str) -> None:
    model = (shared_models / f"{name}.tflite").read_bytes()
    compare(model, runs=4 if name == "person_detect" else 30, tflm=False)
    reference = Engine(model, kernels="reference")
    assert Engine(model, optimized=True).selftest_digest(7) == reference.selftest_digest(7)


@pytest.mark.parametrize("name", SHARED)
def test_optimized_arena_not_above_tflm(host_lib: None, shared_models: Path, name: str) -> None:
    # the kernels' scratch is planned into the activation region's gaps (plan.c)
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    path = shared_models / f"{name}.tflite"
    assert Engine(path.read_bytes(), optimized=True).arena_used <= tflm_arena_bytes(path)


@pytest.mark.parametrize("name", GENERATED)
def test_generated_models_optimized_bit_exact(host_lib: None, name: str) -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    pytest.importorskip("tensorflow")
    cache = ensure_models(DEFAULT, jobs=2)
    compare((cache / f"{name}.tflite").read_bytes(), runs=60, tflm=True)


@pytest.mark.parametrize("name", EXTRA)
def test_extra_shapes_optimized_bit_exact(host_lib: None, name: str) -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    pytest.importorskip("tensorflow")
    cache = ensure_extra_models(EXTRA)
    compare((cache / f"{name}.tflite").read_bytes(), runs=40, tflm=True)


@pytest.mark.parametrize("zero_point", [-7, 5, 127])
def test_fc_weight_zero_point_optimized_equals_reference(
    host_lib: None, shared_models: Path, zero_point: int
) -> None:
    models = [(shared_models / "hello_world_int8.tflite").read_bytes()]
    cache = REPO / "build" / "engine-differential" / differential.GENERATOR_KEY
    models += [p.read_bytes() for p in sorted(cache.glob("fc-*.tflite"))[:6]]
    for model in models:
        compare(with_fc_weight_zero_point(model, zero_point), runs=30, tflm=False)


@pytest.mark.parametrize(
    ("output_scale", "bias"),
    [
        (2.0**-12, None),
        (2.0**24, None),
        (1.0, 2**30 - 2**19),
        (1.0, 2**30 - 2**19 - 1),
        (1.0, 2**30 - 1),
        (1.0, 2**31 - 1),
    ],
)
def test_dw3x3_requantization_outside_the_fast_path(
    host_lib: None, output_scale: float, bias: int | None
) -> None:
    # the 3x3 depthwise groups whose shifts or biases the fast requantization does not take (left shifts,
    # right shifts above 21, |bias| from 2^30 - 2^19) must take the general one; the others, near the bound
    cache = ensure_extra_models(EXTRA)
    for path in sorted(cache.glob("dw3-*.tflite")):
        compare(with_depthwise_requantization(path.read_bytes(), output_scale, bias), runs=12, tflm=False)


@pytest.mark.parametrize(
    ("output_scale", "bias"),
    [(2.0**-12, None), (2.0**24, None), (1.0, 2**29), (1.0, 2**30 - 1), (1.0, 2**31 - 1)],
)
def test_dw_multiplier_requantization_outside_the_fast_path(
    host_lib: None, output_scale: float, bias: int | None
) -> None:
    # multiplier > 1: an input channel whose outputs' shifts or biases the fast requantization does not
    # take (left shifts, right shifts above 21, |bias| + taps x 128 x 255 from 2^30) takes the general
    # one, with filters not doubled; 2^29 stays fast for every window up to 80 taps
    cache = ensure_extra_models(EXTRA)
    for fam in ("dw1", "dwm", "dwk"):
        for path in sorted(cache.glob(f"{fam}-*.tflite")):
            compare(with_depthwise_requantization(path.read_bytes(), output_scale, bias), runs=8, tflm=False)
