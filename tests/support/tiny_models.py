"""MLPerf-Tiny-shaped int8 models with random weights (issue 15), built by TensorFlow, no downloads.

- `ad`: the anomaly-detection FC autoencoder 640-128-128-128-128-8-128-128-128-128-640 (ReLU), input
  zero point 89 (the model of issue 15's "Why");
- `ic`: ResNet-8 on 32x32x3 (3x3 convolutions with 16/32/64 channels, stride-2 stages with 1x1
  shortcuts, residual ADDs, average pool, FC 10, softmax);
- `kws`: DS-CNN on 49x10x1 (10x4 stride-2 convolution with 64 channels, 4 x (3x3 depthwise + 1x1
  pointwise with 64), average pool, FC 12, softmax).

`<family>-small-<seed>`: the same architecture, narrower and on smaller inputs, with its own random
weights (tests/device/test_engine_tiny_models.py). Full int8 quantization by engine_differential's
convert_int8 on 16 random representative inputs; per-channel weights (the converter's default).

Models are built in a child process (TensorFlow is slow to import; `python -m tests.support.tiny_models
OUT_DIR NAME...`) and cached in $TMPDIR/tinyfleet-tiny-models/<hash of this file and of convert_int8>/, so
a changed generator builds afresh.

The figures: `bench/inference_m4.py --markdown --tiny` (M4), `bench/tiny_models.py --host` (host).
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.engine_differential import convert_int8
from tests.support.model_cache import build_missing, write_models

FULL = ["ad", "ic", "kws"]
SMALL = [f"{fam}-small-{seed}" for seed in range(2) for fam in FULL]


# --- architectures (run in the child process, which imports TensorFlow) -----------------------------


def _ad(tf: Any, small: bool) -> tuple[Any, tuple[float, float]]:
    L = tf.keras.layers
    width, hidden, code = (160, 32, 8) if small else (640, 128, 8)
    x = L.Input((width,), batch_size=1)
    y = x
    for units in (hidden, hidden, hidden, hidden, code, hidden, hidden, hidden, hidden):
        y = L.Dense(units, activation="relu")(y)
    # (-5.7, 1.0) quantizes with zero point 89
    return tf.keras.Model(x, L.Dense(width)(y)), (-5.7, 1.0)


def _ic(tf: Any, small: bool) -> tuple[Any, tuple[float, float]]:
    L = tf.keras.layers
    side, widths = (16, (8, 16, 32)) if small else (32, (16, 32, 64))
    x = L.Input((side, side, 3), batch_size=1)
    y = L.Conv2D(widths[0], 3, padding="same", activation="relu")(x)
    for stage, filters in enumerate(widths):
        stride = 1 if stage == 0 else 2
        z = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(y)
        z = L.Conv2D(filters, 3, padding="same")(z)
        shortcut = y if stage == 0 else L.Conv2D(filters, 1, strides=stride)(y)
        y = L.Activation("relu")(L.Add()([shortcut, z]))
    y = L.AveragePooling2D(y.shape[1])(y)
    y = L.Dense(10, activation="softmax")(L.Flatten()(y))
    return tf.keras.Model(x, y), (0.0, 1.0)


def _kws(tf: Any, small: bool) -> tuple[Any, tuple[float, float]]:
    L = tf.keras.layers
    (h, w), ch, blocks = ((25, 10), 24, 2) if small else ((49, 10), 64, 4)
    x = L.Input((h, w, 1), batch_size=1)
    y = L.Conv2D(ch, (10, 4), strides=2, padding="same", activation="relu")(x)
    for _ in range(blocks):
        y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
        y = L.Conv2D(ch, 1, activation="relu")(y)
    y = L.AveragePooling2D((y.shape[1], y.shape[2]))(y)
    y = L.Dense(12, activation="softmax")(L.Flatten()(y))
    return tf.keras.Model(x, y), (-3.0, 3.0)


ARCHITECTURES = {"ad": _ad, "ic": _ic, "kws": _kws}


def build_model(name: str, tf: Any) -> bytes:
    """The int8 model `name` (`ad`, `ic`, `kws` or `<family>-small-<seed>`), same bytes every time."""
    family, *rest = name.split("-")
    small = bool(rest)
    seed = int(rest[1]) if small else 0
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(1000 * FULL.index(family) + seed)
    model, (lo, hi) = ARCHITECTURES[family](tf, small)
    data_rng = np.random.default_rng([FULL.index(family), seed])
    return convert_int8(tf, model, [(lo, hi)], data_rng, samples=16)


# --- cache -----------------------------------------------------------------------------------------

# this whole file (FULL's order seeds the models too) and the shared conversion
KEY = hashlib.sha256(Path(__file__).read_bytes() + inspect.getsource(convert_int8).encode()).hexdigest()[:12]
CACHE = Path(tempfile.gettempdir()) / "tinyfleet-tiny-models" / KEY


def ensure(names: list[str], jobs: int = 1) -> dict[str, Path]:
    """Paths of the models `names`, building the missing ones in child processes."""
    build_missing(names, "tests.support.tiny_models", CACHE, jobs)
    return {n: CACHE / f"{n}.tflite" for n in names}


if __name__ == "__main__":
    write_models(sys.argv[1], sys.argv[2:], build_model)
