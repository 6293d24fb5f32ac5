"""`compress()`: from a Keras model (or a task trained here) to a validated int8 `.tflite`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyfleet.ml import architectures, compress, datasets, evaluate


@dataclass(frozen=True)
class CompressionResult:
    tflite: bytes
    before: evaluate.ModelMeasure  # float32 .tflite of the input model
    after: evaluate.ModelMeasure  # the int8 .tflite
    steps: tuple[str, ...]
    sparsity: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)


def float_tflite(model: Any) -> bytes:
    return bytes(compress.converter_for(model).convert())


def train(model: Any, data: datasets.Dataset, epochs: int, learning_rate: float = 0.005) -> Any:
    import keras

    model.compile(
        keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(data.x, data.y, epochs=epochs, batch_size=32, verbose=0)
    return model


def compress_model(
    model: Any,
    train_data: datasets.Dataset,
    test_data: datasets.Dataset,
    *,
    prune_to: float = 0.0,
    distill_width: int = 0,
    epochs: int = 4,
) -> CompressionResult:
    """Prune (optional), distill into a `distill_width` student (optional), quantize, and measure."""
    steps: list[str] = []
    before = evaluate.measure(float_tflite(model), test_data.x, test_data.y)
    notes: dict[str, Any] = {}
    if distill_width:
        kind = "dense" if len(train_data.input_shape) == 1 else "conv"
        classes = len(train_data.class_names)
        student = architectures.build(kind, train_data.input_shape, classes, width=distill_width, seed=1)
        model = compress.distill(model, student, train_data.x, train_data.y, epochs=epochs * 2)
        steps.append(f"distill(width={distill_width})")
    if prune_to:
        import keras

        model.compile(
            keras.optimizers.Adam(0.002), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
        )
        model = compress.prune_magnitude(model, train_data.x, train_data.y, prune_to, epochs=epochs)
        steps.append(f"prune({prune_to:.0%})")
    sparsity = compress.sparsity(model)
    tflite = compress.quantize_int8(model, train_data.x)
    steps.append("quantize(int8)")
    after = evaluate.measure(tflite, test_data.x, test_data.y)
    return CompressionResult(tflite, before, after, tuple(steps), sparsity, notes)


def compress_task(
    task: str,
    *,
    samples: int = 2000,
    epochs: int = 10,
    width: int = 16,
    prune_to: float = 0.0,
    distill_width: int = 0,
    seed: int = 0,
) -> CompressionResult:
    """Train a float model on a built-in data set, then compress it."""
    data = datasets.load(task, samples=samples, seed=seed)
    train_data, test_data = data.split(seed=seed)
    kind = architectures.default_kind(task)
    model = architectures.build(kind, data.input_shape, len(data.class_names), width=width, seed=seed)
    train(model, train_data, epochs)
    return compress_model(
        model,
        train_data,
        test_data,
        prune_to=prune_to,
        distill_width=distill_width,
        epochs=max(2, epochs // 3),
    )


def compress_keras_file(
    path: Path, data_path: Path, *, prune_to: float = 0.0, distill_width: int = 0, epochs: int = 4
) -> CompressionResult:
    """Compress a saved Keras model with a data set given as an `.npz` holding arrays `x` and `y`."""
    import keras

    model = keras.models.load_model(path)
    with np.load(data_path) as npz:
        if "x" not in npz or "y" not in npz:
            raise ValueError(f"{data_path}: the .npz must hold arrays named 'x' and 'y'")
        x, y = npz["x"].astype(np.float32), npz["y"].astype(np.int64)
    classes = tuple(str(c) for c in range(int(y.max()) + 1))
    train_data, test_data = datasets.Dataset(path.stem, x, y, classes).split()
    return compress_model(
        model, train_data, test_data, prune_to=prune_to, distill_width=distill_width, epochs=epochs
    )
