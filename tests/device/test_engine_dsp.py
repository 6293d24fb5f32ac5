"""The optimized (Cortex-M4 DSP) kernels, run on the host with their instructions emulated in portable C,
against the reference kernels and TFLM (issue 15).

`Engine(model, optimized=True)` takes the same code path as the M4 (kernels_conv_dsp.c, kernels_fc_dsp.c);
only the DSP instructions themselves are C functions (dsp.h). Models: the shared TFLM models, and the
random single-op-family models of the differential generator (CONV_2D, DEPTHWISE_CONV_2D with
multipliers 1..3 and input depths 1..8, FC chains, mixed chains, the autoencoder) with random inputs, and
extra shapes (depthwise with multipliers 2..13 on input depths 1..8, wide convolutions).
The M4 itself is checked by tests/sim/test_qemu_engine.py and bench/inference_m4.py (self-test digest).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.device import test_engine_differential as differential
from tests.device.test_engine_differential import DEFAULT, ensure_models
from tests.device.test_engine_tflm import tflm_arena_bytes
from tests.support.paths import REPO
from tinyfleet.device.engine import Engine
from tinyfleet.signing._flatbuf import FlatBuffer

FULLY_CONNECTED = 9
SHARED = ["hello_world_int8", "micro_speech_quantized", "person_detect"]
GENERATED = [n for n in DEFAULT if n.split("-")[0] in ("conv", "dw", "fc", "mixed", "ae")]


# --- shapes the differential families rarely reach, for the optimized kernels' own paths -------------
# (built like the differential models, by TensorFlow in a child process: `python -m
# tests.device.test_engine_dsp OUT_DIR name...`)


def _build_dw1(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    """Depthwise on a 1-channel input with multipliers 4..13 (micro_speech's path: two taps per SMLAD,
    odd tap counts, channel tails)."""
    layers = tf.keras.layers
    h, w = int(rng.integers(3, 20)), int(rng.integers(3, 20))
    x = layers.Input((h, w, 1), batch_size=1)
    geo = differential._conv_geometry(rng, (h, w))
    mult = int(rng.integers(4, 14))
    y = layers.DepthwiseConv2D(depth_multiplier=mult, activation=rng.choice(differential.ACTIVATIONS), **geo)(
        x
    )
    return tf.keras.Model(x, y), [differential._input_range(rng)]


def _build_dwm(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    """Depthwise on 2..8 input channels with multipliers 2..9 (per input channel: groups of four
    outputs, then two, then one), random strides, padding and dilation."""
    layers = tf.keras.layers
    h, w, c = int(rng.integers(3, 14)), int(rng.integers(3, 14)), int(rng.integers(2, 9))
    x = layers.Input((h, w, c), batch_size=1)
    geo = differential._conv_geometry(rng, (h, w))
    mult = int(rng.integers(2, 10))
    y = layers.DepthwiseConv2D(depth_multiplier=mult, activation=rng.choice(differential.ACTIVATIONS), **geo)(
        x
    )
    return tf.keras.Model(x, y), [differential._input_range(rng)]


def _build_convw(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    """CONV_2D with wider inputs (4-aligned and not) and up to 33 output channels; FC depths not a
    multiple of 4 follow it."""
    layers = tf.keras.layers
    h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    c = int(rng.choice([3, 4, 5, 8, 12, 16, 20, 33]))
    x = layers.Input((h, w, c), batch_size=1)
    geo = differential._conv_geometry(rng, (h, w))
    y = layers.Conv2D(int(rng.integers(1, 34)), activation=rng.choice(differential.ACTIVATIONS), **geo)(x)
    if rng.random() < 0.5:
        y = layers.Dense(int(rng.integers(1, 20)))(layers.Flatten()(y))
    return tf.keras.Model(x, y), [differential._input_range(rng)]


EXTRA_FAMILIES = {"dw1": _build_dw1, "convw": _build_convw, "dwm": _build_dwm}
EXTRA = [f"{fam}-{seed}" for seed in range(12) for fam in EXTRA_FAMILIES]
EXTRA_CACHE = REPO / "build" / "engine-dsp" / differential.GENERATOR_KEY


def _register_extra_families() -> None:
    for fam, builder in EXTRA_FAMILIES.items():
        if fam not in differential.FAMILIES:
            differential.FAMILIES.append(fam)
            differential.BUILDERS[fam] = builder


def ensure_extra_models(names: list[str]) -> Path:
    missing = [n for n in names if not (EXTRA_CACHE / f"{n}.tflite").exists()]
    if missing:
        EXTRA_CACHE.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONWARNINGS="ignore")
        proc = subprocess.run(
            [sys.executable, "-m", "tests.device.test_engine_dsp", str(EXTRA_CACHE), *missing],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=3600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"model generation failed: {proc.stderr.decode()[-2000:]}")
    return EXTRA_CACHE


@pytest.fixture(scope="module")
def host_lib() -> None:
    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)


def _inputs(engine: Engine, rng: np.random.Generator, run: int) -> list[np.ndarray]:
    out = []
    for i in range(engine.input_count):
        shape = engine.input_info(i).shape
        if run < 2:  # the extremes of int8 first
            out.append(np.full(shape, -128 if run == 0 else 127, np.int8))
        else:
            out.append(rng.integers(-128, 128, size=shape, dtype=np.int8))
    return out


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
        for i, x in enumerate(_inputs(ref, rng, run)):
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


def with_fc_weight_zero_point(model: bytes, zero_point: int) -> bytes:
    """`model` with every FULLY_CONNECTED weight zero point set to `zero_point` (TensorFlow writes 0;
    the engine supports others, through a separate term of the optimized kernel)."""
    out = bytearray(model)
    root = FlatBuffer(model).root()
    codes = root.table_vector(1, "operator codes")
    graph = root.table_vector(2, "subgraphs")[0]
    tensors = graph.table_vector(0, "tensors")
    patched = 0
    for op in graph.table_vector(3, "operators"):
        code = codes[op.u32(0)]
        if max(code.u8(0), code.i32(3)) != FULLY_CONNECTED:
            continue
        quant = tensors[op.int_vector(1, "inputs")[1]].table(4, "quantization")
        vec = quant.vector(3, 8, "zero point") if quant is not None else None
        assert vec is not None
        for i in range(vec[1]):
            struct.pack_into("<q", out, vec[0] + 8 * i, zero_point)
            patched += 1
    assert patched, "no FULLY_CONNECTED weights"
    return bytes(out)


@pytest.mark.parametrize("zero_point", [-7, 5, 127])
def test_fc_weight_zero_point_optimized_equals_reference(
    host_lib: None, shared_models: Path, zero_point: int
) -> None:
    models = [(shared_models / "hello_world_int8.tflite").read_bytes()]
    cache = REPO / "build" / "engine-differential" / differential.GENERATOR_KEY
    models += [p.read_bytes() for p in sorted(cache.glob("fc-*.tflite"))[:6]]
    for model in models:
        compare(with_fc_weight_zero_point(model, zero_point), runs=30, tflm=False)


if __name__ == "__main__":
    _register_extra_families()
    differential._main(sys.argv[1], sys.argv[2:])
