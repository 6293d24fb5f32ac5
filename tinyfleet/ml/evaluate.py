"""Measure a `.tflite` model the way a device runs it: accuracy and arena with the TFLM interpreter."""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelMeasure:
    size_bytes: int
    accuracy: float
    arena_bytes: int


def _quantize(x: np.ndarray, detail: dict[str, object]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])  # type: ignore[call-overload]
    if dtype == np.float32:
        return x.astype(np.float32)
    params = detail["quantization_parameters"]
    assert isinstance(params, dict)
    scale = float(params["scales"][0])
    zero = int(params["zero_points"][0])
    info = np.iinfo(dtype)
    quantized: np.ndarray = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
    return quantized


def tflm_predict(model: bytes, x: np.ndarray) -> np.ndarray:
    """Run every row of `x` through the TFLM interpreter; returns the raw output tensors stacked."""
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model)
    detail = interpreter.get_input_details(0)
    outputs = []
    for row in x:
        interpreter.set_input(_quantize(row[np.newaxis], detail), 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
    return np.stack(outputs)


def tflm_accuracy(model: bytes, x: np.ndarray, y: np.ndarray) -> float:
    return float((tflm_predict(model, x).argmax(axis=1) == y).mean())


def tflm_arena_bytes(model: bytes) -> int:
    """Bytes of TFLM's planned tensor arena (the 'head' its recording allocator reports).

    The interpreter prints its allocation record from C++ on file descriptor 2, so it is captured there.
    """
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model)
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    match = re.search(r"Arena allocation head (\d+) bytes", text)
    if not match:
        raise RuntimeError("TFLM did not report its arena allocation")
    return int(match.group(1))


def measure(model: bytes, x: np.ndarray, y: np.ndarray) -> ModelMeasure:
    return ModelMeasure(len(model), tflm_accuracy(model, x, y), tflm_arena_bytes(model))
