"""Models and inputs of the optimized (DSP) kernels' tests (tests/device/test_engine_dsp.py,
test_engine_host.py): the shared and differential models they use, extra shapes the differential
families rarely reach (built like those, by TensorFlow in a child process), int8 inputs, and a
FULLY_CONNECTED weight zero point patched into a model."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests.support import engine_differential as differential
from tests.support.engine_differential import DEFAULT
from tests.support.paths import REPO
from tinyfleet.device.engine import Engine
from tinyfleet.signing._flatbuf import FlatBuffer

FULLY_CONNECTED = 9
DEPTHWISE_CONV_2D = 4
SHARED = ["hello_world_int8", "micro_speech_quantized", "person_detect"]
GENERATED = [n for n in DEFAULT if n.split("-")[0] in ("conv", "dw", "fc", "mixed", "ae")]


# --- shapes the differential families rarely reach, for the optimized kernels' own paths -------------
# (built like the differential models, by TensorFlow in a child process: `python -m
# tests.support.engine_dsp_models OUT_DIR name...`)


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


def _build_dwk(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    """Depthwise with wide windows (micro_speech's 10x8 and others, 2..80 taps, odd and even counts) on
    1..3 input channels, multipliers 2..8, strides 1..3, same or valid padding: long tap-pair loops,
    windows inside the input in runs, and border windows reaching far outside it."""
    layers = tf.keras.layers
    kh, kw = int(rng.integers(1, 11)), int(rng.integers(2, 9))
    h, w = int(rng.integers(kh, 2 * kh + 8)), int(rng.integers(kw, 2 * kw + 8))
    x = layers.Input((h, w, int(rng.integers(1, 4))), batch_size=1)
    y = layers.DepthwiseConv2D(
        (kh, kw),
        strides=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
        padding="same" if rng.random() < 0.7 else "valid",
        depth_multiplier=int(rng.integers(2, 9)),
        activation=rng.choice(differential.ACTIVATIONS),
    )(x)
    return tf.keras.Model(x, y), [differential._input_range(rng)]


def _build_dw3(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    """3x3 depthwise, multiplier 1, 4..16 channels (kernels_dw_dsp.c's 3x3 path: whole windows, border
    windows moved inside the input, windows wider than a 1- or 2-pixel input read tap by tap), strides
    1..2 or dilation 1..2, same or valid padding."""
    layers = tf.keras.layers
    h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    c = int(rng.choice([4, 6, 8, 12, 16]))
    x = layers.Input((h, w, c), batch_size=1)
    dilated = rng.random() < 0.3
    strides = (1, 1) if dilated else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if dilated else (1, 1)
    fits = 2 * dilation[0] + 1 <= h and 2 * dilation[1] + 1 <= w
    padding = "same" if not fits or rng.random() < 0.6 else "valid"
    y = layers.DepthwiseConv2D(
        3,
        strides=strides,
        dilation_rate=dilation,
        padding=padding,
        activation=rng.choice(differential.ACTIVATIONS),
    )(x)
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


EXTRA_FAMILIES = {
    "dw1": _build_dw1,
    "convw": _build_convw,
    "dwm": _build_dwm,
    "dw3": _build_dw3,
    "dwk": _build_dwk,
}
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
            [sys.executable, "-m", "tests.support.engine_dsp_models", str(EXTRA_CACHE), *missing],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=3600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"model generation failed: {proc.stderr.decode()[-2000:]}")
    return EXTRA_CACHE


def int8_inputs(engine: Engine, rng: np.random.Generator, run: int) -> list[np.ndarray]:
    """The inputs of run `run`: all -128, all 127, then random int8."""
    out = []
    for i in range(engine.input_count):
        shape = engine.input_info(i).shape
        if run < 2:  # the extremes of int8 first
            out.append(np.full(shape, -128 if run == 0 else 127, np.int8))
        else:
            out.append(rng.integers(-128, 128, size=shape, dtype=np.int8))
    return out


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


def _depthwise_ops(model: bytes) -> tuple[FlatBuffer, list[Any], list[Any]]:
    """The model's flatbuffer, tensors of its first subgraph and its DEPTHWISE_CONV_2D operators."""
    fb = FlatBuffer(model)
    root = fb.root()
    codes = root.table_vector(1, "operator codes")
    graph = root.table_vector(2, "subgraphs")[0]
    ops = [
        op
        for op in graph.table_vector(3, "operators")
        if max(codes[op.u32(0)].u8(0), codes[op.u32(0)].i32(3)) == DEPTHWISE_CONV_2D
    ]
    assert ops, "no DEPTHWISE_CONV_2D"
    return fb, graph.table_vector(0, "tensors"), ops


def with_depthwise_requantization(model: bytes, output_scale: float, bias: int | None) -> bytes:
    """`model` with each DEPTHWISE_CONV_2D's output scale multiplied by `output_scale` (moving its
    requantization shifts: a left shift, or a right shift above 21) and, when `bias` is given, its bias
    values set to +-bias alternately (near the int32 range the engine's fast requantization checks)."""
    out = bytearray(model)
    fb, tensors, ops = _depthwise_ops(model)
    buffers = fb.root().table_vector(4, "buffers")
    for op in ops:
        inputs, outputs = op.int_vector(1, "inputs"), op.int_vector(2, "outputs")
        quant = tensors[outputs[0]].table(4, "quantization")
        vec = quant.vector(2, 4, "scale") if quant is not None else None
        assert vec is not None
        for i in range(vec[1]):
            (scale,) = struct.unpack_from("<f", out, vec[0] + 4 * i)
            struct.pack_into("<f", out, vec[0] + 4 * i, scale * output_scale)
        if bias is not None and len(inputs) > 2 and inputs[2] >= 0:
            data = buffers[tensors[inputs[2]].u32(2)].vector(0, 1, "bias data")
            assert data is not None
            for i in range(data[1] // 4):
                struct.pack_into("<i", out, data[0] + 4 * i, bias if i % 2 == 0 else -bias)
    return bytes(out)


if __name__ == "__main__":
    _register_extra_families()
    differential._main(sys.argv[1], sys.argv[2:])
