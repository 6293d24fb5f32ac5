"""The random int8 models of the differential testing of the ops added for issue 15's next models
(SQUEEZE, SPLIT, STRIDED_SLICE, TANH, HARD_SWISH, RESIZE_NEAREST_NEIGHBOR, TRANSPOSE_CONV) against TFLM;
used by tests/device/test_engine_ops_differential.py and bench/engine_differential_ops.py.

The same scheme as engine_differential.py (which holds `compare` and the conversion): a model is named
`family-seed`, built by TensorFlow from that name alone in a child process, cached under
build/engine-differential-ops/<hash of this generator>/ (a cache of its own, so adding a family here
does not rebuild the other generator's models).

Build models by hand: python -m tests.support.engine_op_models OUT_DIR squeeze-3 split-7 ...
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.engine_differential import convert_int8, family_names, start_build
from tests.support.model_cache import build_missing, generator_key, write_models
from tests.support.paths import REPO

FAMILIES = ["squeeze", "split", "strided_slice", "tanh", "hard_swish", "resize_nearest", "transpose_conv"]
# the op each family must contain (the converter may rewrite a layer into another op)
FAMILY_OP = {
    "squeeze": "SQUEEZE",
    "split": "SPLIT",
    "strided_slice": "STRIDED_SLICE",
    "tanh": "TANH",
    "hard_swish": "HARD_SWISH",
    "resize_nearest": "RESIZE_NEAREST_NEIGHBOR",
    "transpose_conv": "TRANSPOSE_CONV",
}
# elementwise function families: their models take 256 int8 inputs, also fed the whole int8 range
ELEMENTWISE = {"tanh", "hard_swish"}


# --- model generation (runs in the child process, which imports TensorFlow) ---------------------------


def _input_range(rng: np.random.Generator) -> tuple[float, float]:
    """A float range whose int8 zero point spans the whole int8 range, scales over 4 decades."""
    zp = int(rng.integers(-128, 128))
    scale = float(10 ** rng.uniform(-3, 1))
    return (-128 - zp) * scale, (127 - zp) * scale


def _front(rng: np.random.Generator, tf: Any, x: Any) -> Any:
    """Half the models get a 1x1 conv first, so the op's input has a requantized scale of its own."""
    if rng.random() < 0.5:
        return x
    return tf.keras.layers.Conv2D(int(x.shape[-1]), 1)(x)


def _build_squeeze(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    shape: list[int | None] = [int(rng.integers(1, 6)) for _ in range(3)]
    ones = [d for d in range(3) if rng.random() < 0.5] or [int(rng.integers(0, 3))]
    # Two unknown dims in the output (the batch and a kept one, 1 in the model) keep the converter from
    # turning the squeeze into a RESHAPE (which can only express one unknown dim).
    unknown = int(rng.integers(0, 2))
    ones = [d for d in ones if d != unknown] or [2]
    for d in ones:
        shape[d] = 1
    shape[unknown] = None
    x = L.Input(tuple(shape), batch_size=None)
    y = _front(rng, tf, x)
    axes = [d + 1 for d in ones]
    y = L.Lambda(lambda t: tf.squeeze(t, axis=axes))(y)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_split(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    parts = int(rng.integers(2, 5))
    shape = [int(rng.integers(1, 6)) for _ in range(3)]
    axis = int(rng.integers(0, 3))
    shape[axis] = parts * int(rng.integers(1, 4))
    x = L.Input(tuple(shape), batch_size=1)
    y = _front(rng, tf, x)
    neg = rng.random() < 0.3
    outs = L.Lambda(lambda t: tf.split(t, parts, axis=axis - 3 if neg else axis + 1))(y)
    return tf.keras.Model(x, list(outs)), [_input_range(rng)]


def _build_strided_slice(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    shape = [int(rng.integers(1, 9)) for _ in range(3)]
    x = L.Input(tuple(shape), batch_size=1)
    y = _front(rng, tf, x)
    slices: list[Any] = [slice(None)]
    for d in shape:
        kind = rng.random()
        if kind < 0.15:
            slices.append(int(rng.integers(-d, d)))  # shrink axis
            continue
        while True:  # an empty slice would make the converter fold the whole model away
            stride = int(rng.choice([1, 2, 3, -1, -2]))
            lo = int(rng.integers(-d - 2, d + 2)) if rng.random() < 0.7 else None
            hi = int(rng.integers(-d - 2, d + 2)) if rng.random() < 0.7 else None
            if len(range(d)[slice(lo, hi, stride)]) > 0:
                break
        slices.append(slice(lo, hi, stride))
    key = tuple(slices)
    y = L.Lambda(lambda t: t[key])(y)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_tanh(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    x = L.Input((256,), batch_size=1)
    # directly on the input (its scale over 4 decades), or after an FC with a scale of its own
    y = L.Dense(256)(x) if rng.random() < 0.3 else x
    y = L.Activation("tanh")(y)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_hard_swish(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    x = L.Input((256,), batch_size=1)
    y = L.Dense(256)(x) if rng.random() < 0.3 else x
    # x * relu6(x + 3) / 6, which the converter fuses into HARD_SWISH
    y = L.Lambda(lambda t: t * tf.nn.relu6(t + 3.0) * (1.0 / 6.0))(y)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_resize_nearest(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    h, w, c = int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 5))
    x = L.Input((h, w, c), batch_size=1)
    y = _front(rng, tf, x)
    size = [int(rng.integers(1, 17)), int(rng.integers(1, 17))]
    mode = int(rng.integers(0, 3))  # plain, align_corners, half_pixel_centers
    y = L.Lambda(
        lambda t: tf.compat.v1.image.resize_nearest_neighbor(
            t, size, align_corners=mode == 1, half_pixel_centers=mode == 2
        )
    )(y)
    return tf.keras.Model(x, y), [_input_range(rng)]


def _build_transpose_conv(rng: np.random.Generator, tf: Any) -> tuple[Any, list[tuple[float, float]]]:
    L = tf.keras.layers
    h, w, c = int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 6))
    x = L.Input((h, w, c), batch_size=1)
    activations: list[Any] = [None, "relu"]  # Any: rng.choice of str | None
    layer = L.Conv2DTranspose(
        int(rng.integers(1, 9)),
        (int(rng.integers(1, 5)), int(rng.integers(1, 5))),
        strides=(int(rng.integers(1, 4)), int(rng.integers(1, 4))),
        padding=str(rng.choice(["same", "valid"])),
        use_bias=bool(rng.random() < 0.7),
        activation=rng.choice(activations),
    )
    y = layer(x)
    kernel = layer.get_weights()
    kernel[0] = (rng.normal(0, 1, size=kernel[0].shape) * 10 ** rng.uniform(-2, 1)).astype(np.float32)
    if len(kernel) > 1:
        kernel[1] = rng.normal(0, 1, size=kernel[1].shape).astype(np.float32)
    layer.set_weights(kernel)
    return tf.keras.Model(x, y), [_input_range(rng)]


BUILDERS: dict[str, Callable[[np.random.Generator, Any], tuple[Any, list[tuple[float, float]]]]] = {
    "squeeze": _build_squeeze,
    "split": _build_split,
    "strided_slice": _build_strided_slice,
    "tanh": _build_tanh,
    "hard_swish": _build_hard_swish,
    "resize_nearest": _build_resize_nearest,
    "transpose_conv": _build_transpose_conv,
}


def build_model(name: str, tf: Any) -> bytes:
    """The int8 model `family-seed`: the same bytes for the same name (and TensorFlow version)."""
    family, seed, family_index = start_build(name, FAMILIES, tf, seed_offset=1000)
    rng = np.random.default_rng([seed, family_index, 15])
    model, ranges = BUILDERS[family](rng, tf)
    return convert_int8(tf, model, ranges, np.random.default_rng([seed, family_index, 16]))


def _main(out_dir: str, names: list[str]) -> None:
    write_models(out_dir, names, build_model)


GENERATOR_KEY = generator_key(
    _input_range, _front, start_build, build_model, convert_int8, *BUILDERS.values()
)
CACHE = REPO / "build" / "engine-differential-ops" / GENERATOR_KEY


def model_names(count_per_family: int, first_seed: int = 0) -> list[str]:
    return family_names(FAMILIES, count_per_family, first_seed)


def ensure_models(names: list[str], jobs: int = 1, cache: Path = CACHE) -> Path:
    """Build the missing models in `jobs` child processes; returns the cache directory."""
    return build_missing(names, "tests.support.engine_op_models", cache, jobs)


def whole_range_differs(model: bytes) -> list[int]:
    """Feed -128..127 once (a 256-element input) to engine and TFLM; the inputs whose outputs differ."""
    from tflite_micro.python.tflite_micro import runtime

    from tinyfleet.device.engine import Engine

    engine = Engine(model)
    interp = runtime.Interpreter.from_bytes(model)
    x = np.arange(-128, 128, dtype=np.int8).reshape(engine.input_info(0).shape)
    engine.set_input(0, x)
    interp.set_input(x, 0)
    engine.invoke()
    interp.invoke()
    ours, theirs = engine.get_output(0).reshape(-1), interp.get_output(0).reshape(-1)
    return [int(v) for v in x.reshape(-1)[ours != theirs]]


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2:])
