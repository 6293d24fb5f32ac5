"""The random int8 models of the engine's differential testing against TFLM (issue 15), and the
comparison itself; used by tests/device/test_engine_differential.py (and the op tests beside it) and by
bench/engine_differential*.py.

Each model is named `family-seed` and built by TensorFlow from that name alone (fixed seeds), so a
difference is reproducible from its name. Families: FC chains with extreme input zero points, CONV_2D and
DEPTHWISE_CONV_2D with random shapes/strides/padding/dilation, pooling, ADD/MUL with broadcast, and a
mixed chain; per-tensor or per-channel, fused activations, weight scales spread over decades.

Models are built in a child process (TensorFlow is slow to import and noisy) and cached under
build/engine-differential/<hash of this file's generator>/, which git ignores.

Build models by hand: python -m tests.support.engine_differential OUT_DIR fc-3 conv-7 ...
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.model_cache import build_missing, generator_key, write_models
from tests.support.paths import REPO

FAMILIES = ["fc", "conv", "dw", "pool", "binary", "mixed", "ae"]
ACTIVATIONS: list[Any] = [None, "relu", "relu6"]  # Any: rng.choice of str | None
# zero points that reach the extremes of int8 (89: the autoencoder of issue 15)
ZERO_POINTS = [-128, -127, -100, 0, 89, 126, 127]


# --- model generation (runs in the child process, which imports TensorFlow) ---------------------------


def _input_range(rng: np.random.Generator) -> tuple[float, float]:
    """A float range whose int8 quantization lands near a chosen zero point, scales over 4 decades."""
    zp = int(rng.choice(ZERO_POINTS)) if rng.random() < 0.6 else int(rng.integers(-128, 128))
    scale = float(10 ** rng.uniform(-3, 1))
    return (-128 - zp) * scale, (127 - zp) * scale


def _spread_weights(layer: Any, rng: np.random.Generator) -> None:
    """Rescale kernels over decades, per output channel too, so multipliers and shifts vary widely."""
    weights = layer.get_weights()
    if not weights:
        return
    kernel = weights[0]
    overall = 10 ** rng.uniform(-2.5, 1.0)
    per_channel = 10 ** rng.uniform(-1.0, 1.0, size=kernel.shape[-1])
    weights[0] = (rng.normal(0, 1, size=kernel.shape) * overall * per_channel).astype(np.float32)
    if len(weights) > 1:
        weights[1] = rng.normal(0, overall * 4, size=weights[1].shape).astype(np.float32)
    layer.set_weights(weights)


def _build_fc(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    big = rng.random() < 0.25  # the autoencoder's shape: wide input and output, narrow middle
    depth = int(rng.integers(2, 6)) if big else int(rng.integers(1, 4))
    width = int(rng.choice([320, 640])) if big else int(rng.integers(1, 80))
    x = L.Input((width,), batch_size=1)
    y = x
    for i in range(depth):
        last = i == depth - 1
        units = width if big and last else int(rng.integers(1, 130 if big else 48))
        y = L.Dense(units, activation=rng.choice(ACTIVATIONS))(y)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _conv_shape(rng: np.random.Generator) -> tuple[int, int, int]:
    return int(rng.integers(3, 14)), int(rng.integers(3, 14)), int(rng.integers(1, 9))


def _conv_geometry(rng: np.random.Generator, hw: tuple[int, int]) -> dict[str, Any]:
    kernel = (int(rng.integers(1, min(5, hw[0]) + 1)), int(rng.integers(1, min(5, hw[1]) + 1)))
    dilated = rng.random() < 0.3
    # Keras allows dilation only with unit strides; valid padding needs the dilated kernel to fit
    strides = (1, 1) if dilated else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3))) if dilated else (1, 1)
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    fits = span[0] <= hw[0] and span[1] <= hw[1]
    padding = "same" if not fits or rng.random() < 0.5 else "valid"
    return {"kernel_size": kernel, "strides": strides, "dilation_rate": dilation, "padding": padding}


def _build_conv(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    h, w, c = _conv_shape(rng)
    x = L.Input((h, w, c), batch_size=1)
    geo = _conv_geometry(rng, (h, w))
    y = L.Conv2D(int(rng.integers(1, 17)), activation=rng.choice(ACTIVATIONS), **geo)(x)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_dw(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    h, w, c = _conv_shape(rng)
    x = L.Input((h, w, c), batch_size=1)
    geo = _conv_geometry(rng, (h, w))
    mult = int(rng.integers(1, 4))
    y = L.DepthwiseConv2D(depth_multiplier=mult, activation=rng.choice(ACTIVATIONS), **geo)(x)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_pool(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    h, w, c = _conv_shape(rng)
    x = L.Input((h, w, c), batch_size=1)
    size = (int(rng.integers(1, min(4, h) + 1)), int(rng.integers(1, min(4, w) + 1)))
    strides = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = str(rng.choice(["same", "valid"]))
    pool = L.MaxPooling2D if rng.random() < 0.5 else L.AveragePooling2D
    # a conv in front gives the pool an input quantization of its own
    y = L.Conv2D(c, 1, activation=rng.choice(ACTIVATIONS))(x) if rng.random() < 0.5 else x
    y = pool(size, strides=strides, padding=padding)(y)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_binary(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    h, w, c = _conv_shape(rng)
    full: tuple[int, ...] = (h, w, c)
    # the second operand broadcasts along some axes (all combinations of 1s, incl. none)
    mask = rng.random(3) < 0.5
    other = tuple(1 if m else d for m, d in zip(mask, full, strict=True))
    if rng.random() < 0.5:
        full, other = other, full
    a = L.Input(full, batch_size=1)
    b = L.Input(other, batch_size=1)
    op = tf.add if rng.random() < 0.5 else tf.multiply
    y = L.Lambda(lambda t: op(t[0], t[1]))([a, b])
    if rng.random() < 0.5:  # and with a constant, broadcast along the channels
        const = tf.constant(rng.normal(0, 10 ** rng.uniform(-1, 1), size=(y.shape[-1],)).astype(np.float32))
        op2 = tf.add if rng.random() < 0.5 else tf.multiply
        y = L.Lambda(lambda t: op2(t, const))(y)
    act = rng.choice(ACTIVATIONS)
    if act is not None:
        y = L.Activation(act)(y)
    return tf.keras.Model([a, b], y), [_input_range(rng), _input_range(rng)]


def _build_mixed(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    h, w, c = _conv_shape(rng)
    x = L.Input((h + 4, w + 4, c), batch_size=1)
    y = L.Conv2D(int(rng.integers(2, 9)), 3, padding="same", activation=rng.choice(ACTIVATIONS))(x)
    y = L.DepthwiseConv2D(3, strides=2, padding="same", activation=rng.choice(ACTIVATIONS))(y)
    y = (
        L.MaxPooling2D(2, padding="same")(y)
        if rng.random() < 0.5
        else L.AveragePooling2D(2, padding="same")(y)
    )
    y = L.Flatten()(y)
    y = L.Dense(int(rng.integers(2, 20)), activation=rng.choice(ACTIVATIONS))(y)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_ae(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    """Issue 15's autoencoder: 10 FCs 640 -> 128 x4 -> 8 -> 128 x4 -> 640; seed 0 has input zero point 89.

    Its many wide outputs make rare rounding misses (1 LSB on ~1% of inputs) show up."""
    L = tf.keras.layers
    x = L.Input((640,), batch_size=1)
    y = x
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        y = L.Dense(units, activation="relu")(y)
    lo_hi = (-5.7, 1.0) if rng.random() < 0.5 else _input_range(rng)
    return tf.keras.Model(x, L.Dense(640)(y)), [lo_hi]


BUILDERS: dict[str, Callable[[np.random.Generator, Any], tuple[Any, list[tuple[float, float]]]]] = {
    "fc": _build_fc,
    "conv": _build_conv,
    "dw": _build_dw,
    "pool": _build_pool,
    "binary": _build_binary,
    "mixed": _build_mixed,
    "ae": _build_ae,
}


def start_build(name: str, families: list[str], tf: Any, seed_offset: int = 0) -> tuple[str, int, int]:
    """The family, seed and family index of the model `family-seed`, Keras reset (layer names, in the
    model bytes, must not depend on earlier builds) and seeded from them."""
    family, seed_text = name.rsplit("-", 1)
    seed = int(seed_text)
    family_index = families.index(family)
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed * 16 + family_index + seed_offset)
    return family, seed, family_index


def build_model(name: str, tf: Any) -> bytes:
    """The int8 model `family-seed`: the same bytes for the same name (and TensorFlow version)."""
    family, seed, family_index = start_build(name, FAMILIES, tf)
    rng = np.random.default_rng([seed, family_index])
    model, ranges = BUILDERS[family](rng, tf)
    if family != "ae":  # the autoencoder keeps Keras' initial weights, like the model that found the bug
        for layer in model.layers:
            _spread_weights(layer, rng)
    per_tensor = bool(rng.random() < 0.4) or family == "ae"
    data_rng = np.random.default_rng([seed, family_index, 1])
    return convert_int8(tf, model, ranges, data_rng, per_tensor=per_tensor)


def convert_int8(
    tf: Any,
    model: Any,
    ranges: list[tuple[float, float]],
    data_rng: np.random.Generator,
    per_tensor: bool = False,
    samples: int = 24,
) -> bytes:
    """The Keras model as an int8 .tflite (int8 input and output), calibrated on `samples` inputs drawn
    from each input's float range by data_rng (a dimension the model leaves unknown: 1); per_tensor: one
    scale per weight tensor, not per channel. Shared by the generators here, in engine_op_models.py and
    tiny_models.py (16 samples: its models' bytes predate the sharing)."""

    def representative() -> Iterable[list[np.ndarray]]:
        for _ in range(samples):
            yield [
                data_rng.uniform(lo, hi, size=(1, *(d or 1 for d in inp.shape[1:]))).astype(np.float32)
                for inp, (lo, hi) in zip(model.inputs, ranges, strict=True)
            ]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if per_tensor:
        conv._experimental_disable_per_channel = True
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return bytes(conv.convert())


def _main(out_dir: str, names: list[str]) -> None:
    write_models(out_dir, names, build_model)


# --- comparison -------------------------------------------------------------------------------------

GENERATOR_KEY = generator_key(
    _input_range, _spread_weights, _conv_geometry, start_build, build_model, convert_int8, *BUILDERS.values()
)
CACHE = REPO / "build" / "engine-differential" / GENERATOR_KEY


def family_names(families: list[str], count_per_family: int, first_seed: int = 0) -> list[str]:
    """`family-seed` for each seed, every family per seed."""
    return [f"{fam}-{seed}" for seed in range(first_seed, first_seed + count_per_family) for fam in families]


def model_names(count_per_family: int, first_seed: int = 0) -> list[str]:
    return family_names(FAMILIES, count_per_family, first_seed)


def ensure_models(names: list[str], jobs: int = 1, cache: Path = CACHE) -> Path:
    """Build the missing models in `jobs` child processes; returns the cache directory."""
    return build_missing(names, "tests.support.engine_differential", cache, jobs)


@dataclass
class Difference:
    model: str
    run: int
    output: int
    elements: int  # how many output elements differ
    max_abs: int


def compare(name: str, model: bytes, runs: int, seed: int = 0, optimized: bool = False) -> list[Difference]:
    """Run engine and TFLM on the same random int8 inputs (run 0: all -128, run 1: all 127);
    `optimized`: the engine with its optimized (DSP) kernels, emulated on the host."""
    from tflite_micro.python.tflite_micro import runtime

    from tinyfleet.device.engine import Engine

    engine = Engine(model, optimized=optimized)
    interp = runtime.Interpreter.from_bytes(model)
    rng = np.random.default_rng(seed)
    found = []
    for run in range(runs):
        for i in range(engine.input_count):
            info = engine.input_info(i)
            if run < 2:
                x = np.full(info.shape, -128 if run == 0 else 127, np.int8)
            else:
                x = rng.integers(-128, 128, size=info.shape, dtype=np.int8)
            engine.set_input(i, x)
            interp.set_input(x, i)
        engine.invoke()
        interp.invoke()
        for o in range(engine.output_count):
            ours = engine.get_output(o).astype(np.int32)
            theirs = interp.get_output(o).astype(np.int32)
            assert ours.shape == theirs.shape
            if not np.array_equal(ours, theirs):
                diff = np.abs(ours - theirs)
                found.append(Difference(name, run, o, int(np.count_nonzero(diff)), int(diff.max())))
    return found


DEFAULT = model_names(6)  # 42 models
# The suite's sweep: every family, sized so that building uncached models with TensorFlow fits the test
# timeout on a loaded 2-worker run; the large sweep is bench/engine_differential.py (200 per family).
SWEEP = model_names(8, first_seed=100)  # 56 more


def runs_for(name: str, runs: int) -> int:
    # a 1-LSB multiplier miss shows on ~0.1% of the autoencoder's inputs: give it many more
    return runs * 6 if name.startswith("ae-") else runs


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2:])
