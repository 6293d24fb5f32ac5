"""`compress_onnx()`: an ONNX model plus calibration data -> a validated full-integer int8 `.tflite`.

Accuracy before is the ONNX model's own, run by onnxruntime when it is installed (else the translated
float model's, on TFLM); after is the int8 model's on TFLM. The translated float model must agree with
onnxruntime before anything is quantized, so a translation mistake is an error, not a silent loss.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tinyfleet.ml import compress, evaluate, onnx_import
from tinyfleet.ml.onnx_import import OnnxImportError
from tinyfleet.ml.pipeline import CompressionResult, float_tflite

# Translated float vs onnxruntime: float32 sums in another order differ by ~1e-6 relative; a wrong
# layout or weight differs by the order of the outputs themselves.
FIDELITY_TOLERANCE = 1e-3


def load_data(path: Path, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """x (ONNX layout, float32) and y (int labels, or None) from an .npz; OnnxImportError if unusable."""
    try:
        with np.load(path) as npz:
            if "x" not in npz:
                raise OnnxImportError(
                    f"{path.name}: the .npz must hold an array named 'x' (and may hold 'y')"
                )
            x = npz["x"].astype(np.float32)
            y = npz["y"].astype(np.int64).reshape(-1) if "y" in npz else None
    except (OSError, ValueError) as exc:
        if isinstance(exc, OnnxImportError):
            raise
        raise OnnxImportError(f"{path.name} is not a readable .npz: {exc}") from None
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise OnnxImportError(
            f"{path.name}: x has rows of shape {list(x.shape[1:])}, the model takes {list(input_shape)}"
        )
    if len(x) < 2 or (y is not None and len(y) != len(x)):
        raise OnnxImportError(f"{path.name}: need at least 2 rows in x, and y (if given) one label per row")
    return x, y


def onnx_outputs(model: bytes, x: np.ndarray) -> np.ndarray | None:
    """The ONNX model's first output for each row, by onnxruntime; None when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = [session.run(None, {name: row[np.newaxis]})[0] for row in x]  # batch 1: the graph may fix it
    return np.concatenate(rows).reshape(len(x), -1)


def _int8_outputs(tflite: bytes, x_nhwc: np.ndarray) -> np.ndarray:
    """The int8 model's first output, dequantized, in ONNX order (NHWC maps transposed back)."""
    from tflite_micro import runtime

    detail = runtime.Interpreter.from_bytes(tflite).get_output_details(0)
    raw = evaluate.tflm_predict(tflite, x_nhwc).astype(np.float32)
    params = detail["quantization_parameters"]
    scale, zero = float(params["scales"][0]), int(params["zero_points"][0])
    shape = tuple(int(d) for d in detail["shape"])
    out = ((raw - zero) * scale).reshape(len(x_nhwc), *shape[1:])
    return onnx_import.to_nchw(out).reshape(len(x_nhwc), -1)


def compress_onnx(model_path: Path, data_path: Path, *, seed: int = 0) -> CompressionResult:
    """Translate, check against onnxruntime, calibrate on 75% of the data, measure on the other 25%."""
    started = time.perf_counter()
    graph = onnx_import.load(model_path)
    x, y = load_data(data_path, graph.input_shape)
    raw = model_path.read_bytes()
    reference = onnx_outputs(raw, x)
    keras_model = onnx_import.to_keras(graph)
    x_nhwc = onnx_import.to_nhwc(x)
    translated = onnx_import.to_nchw(np.asarray(keras_model.predict(x_nhwc, verbose=0))).reshape(len(x), -1)
    notes: dict[str, float | str] = {"runner": "onnxruntime" if reference is not None else "translated float"}
    if reference is not None:
        if reference.shape != translated.shape:
            raise OnnxImportError(
                f"translation gives {translated.shape[1]} outputs, ONNX {reference.shape[1]}"
            )
        gap = float(np.max(np.abs(reference - translated)))
        scale = max(1.0, float(np.max(np.abs(reference))))
        notes["float_max_abs_diff"] = gap
        if gap > FIDELITY_TOLERANCE * scale:
            raise OnnxImportError(f"the translated model differs from onnxruntime by up to {gap:.3g}")
    else:
        reference = translated
    # Labels missing: accuracy is agreement with the ONNX model's own top class.
    labels = y if y is not None else reference.argmax(axis=1)
    notes["labels"] = "the labels given" if y is not None else "the ONNX model's top class"
    order = np.random.default_rng(seed).permutation(len(x))
    cut = max(1, int(len(x) * 0.75))
    calib, test = order[:cut], order[cut:]
    float_model = float_tflite(keras_model)
    tflite = compress.quantize_int8(keras_model, x_nhwc[calib])
    notes["convert_seconds"] = time.perf_counter() - started
    after_out = _int8_outputs(tflite, x_nhwc[test])
    before_acc = float((reference[test].argmax(axis=1) == labels[test]).mean())
    after_acc = float((after_out.argmax(axis=1) == labels[test]).mean())
    notes["top1_agreement"] = float((after_out.argmax(axis=1) == reference[test].argmax(axis=1)).mean())
    notes["int8_max_abs_diff"] = float(np.max(np.abs(after_out - reference[test])))
    before = evaluate.ModelMeasure(len(raw), before_acc, evaluate.tflm_arena_bytes(float_model))
    after = evaluate.ModelMeasure(len(tflite), after_acc, evaluate.tflm_arena_bytes(tflite))
    steps = ("onnx->keras", "quantize(int8)")
    return CompressionResult(tflite, before, after, steps, compress.sparsity(keras_model), dict(notes))


__all__ = ["OnnxImportError", "compress_onnx", "load_data", "onnx_outputs"]
