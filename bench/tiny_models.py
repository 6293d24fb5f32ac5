#!/usr/bin/env python3
"""MLPerf-Tiny-shaped int8 models with random weights (issue 15), built by TensorFlow, no downloads.

- `ad`: the anomaly-detection FC autoencoder 640-128-128-128-128-8-128-128-128-128-640 (ReLU), input
  zero point 89 (the model of issue 15's "Why");
- `ic`: ResNet-8 on 32x32x3 (3x3 convolutions with 16/32/64 channels, stride-2 stages with 1x1
  shortcuts, residual ADDs, average pool, FC 10, softmax);
- `kws`: DS-CNN on 49x10x1 (10x4 stride-2 convolution with 64 channels, 4 x (3x3 depthwise + 1x1
  pointwise with 64), average pool, FC 12, softmax).

`<family>-small-<seed>`: the same architecture, narrower and on smaller inputs, with its own random
weights (tests/device/test_engine_tiny_models.py). Full int8 quantization by TFLiteConverter with
random representative data; per-channel weights (the converter's default).

Models are built in a child process (TensorFlow is slow to import) and cached in
$TMPDIR/tinyfleet-tiny-models/<hash of this file>/, so a changed generator builds afresh.

    .venv/bin/python bench/tiny_models.py [--small] [--host]  # build; --host: arena, time vs TFLM
    .venv/bin/python -m bench.tiny_models OUT_DIR NAME...   # (the child process)

The M4 figures: `bench/inference_m4.py --markdown --tiny`.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.model_cache import build_missing, write_models  # noqa: E402

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

    def representative() -> Iterable[list[np.ndarray]]:
        for _ in range(16):
            yield [data_rng.uniform(lo, hi, size=(1, *model.inputs[0].shape[1:])).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return bytes(conv.convert())


# --- cache -----------------------------------------------------------------------------------------

KEY = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
CACHE = Path(tempfile.gettempdir()) / "tinyfleet-tiny-models" / KEY


def ensure(names: list[str], jobs: int = 1) -> dict[str, Path]:
    """Paths of the models `names`, building the missing ones in child processes."""
    build_missing(names, "bench.tiny_models", CACHE, jobs)
    return {n: CACHE / f"{n}.tflite" for n in names}


# --- host figures: arena and time against TFLM ----------------------------------------------------


def host_table(paths: dict[str, Path]) -> None:
    """Arena and time per inference of the engine (host build: its default host kernels, and its
    reference kernels) against TFLM's Python interpreter, outputs checked identical first; timing as
    bench/engine.py (fastest of 7 interleaved batches)."""
    import subprocess

    from engine import loadavg, tflm_arena, time_per_call  # bench/engine.py
    from tflite_micro.python.tflite_micro import runtime

    from tinyfleet.device.engine import Engine

    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)
    print(f"load average before: {loadavg()}")
    columns = ["model", "MACs", "engine us", "reference kernels us", "TFLM us", "ratio", "engine arena B"]
    print("| " + " | ".join([*columns, "TFLM arena B"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, path in paths.items():
        model = path.read_bytes()
        engine, reference = Engine(model), Engine(model, kernels="reference")
        interp = runtime.Interpreter.from_bytes(model)
        info = engine.input_info(0)
        x = np.random.default_rng(0).integers(-128, 128, size=info.shape, dtype=np.int8)
        for runner in (engine, reference):
            runner.set_input(0, x)
            runner.invoke()
        interp.set_input(x, 0)
        interp.invoke()
        expect = np.ascontiguousarray(interp.get_output(0)).tobytes()
        assert engine.output_bytes(0) == expect and reference.output_bytes(0) == expect, name
        iterations = max(3, int(0.2 / max(time_per_call([interp.invoke], 1)[0], 1e-6)))
        ours, ref, theirs = time_per_call([engine.invoke, reference.invoke, interp.invoke], iterations)
        print(
            f"| {name} | {engine.mac_count:,} | {ours * 1e6:.1f} | {ref * 1e6:.1f} | {theirs * 1e6:.1f} | "
            f"{ours / theirs:.2f} | {engine.arena_used:,} | {tflm_arena(path):,} |"
        )
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and not sys.argv[1].startswith("-"):
        write_models(sys.argv[1], sys.argv[2:], build_model)
    else:
        built = ensure(FULL + (SMALL if "--small" in sys.argv else []))
        for n, p in built.items():
            print(n, p, p.stat().st_size)
        if "--host" in sys.argv:
            sys.path.insert(0, str(REPO / "bench"))
            host_table(built)
