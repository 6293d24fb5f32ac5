"""ONNX graph -> Keras model, for the operator set the device engine runs.

Why a translator of our own instead of onnx2tf: onnx2tf pins TensorFlow 2.19, numpy 1.26, protobuf 4 and
ml_dtypes 0.5, which would replace the versions the rest of tinyfleet is built and tested with. The ops a
microcontroller engine runs are few (agent_firmware/core/engine/ops.h), so this module reads the graph
with the `onnx` package only and rebuilds it from Keras layers; the existing Keras -> int8 pipeline does
the rest. Every op outside that set is refused up front, all of them named in one message.

Layout: ONNX feature maps are NCHW, TFLite's are NHWC. Weights are transposed once here; a Flatten of an
NHWC map keeps NHWC order (no TRANSPOSE op, which the engine lacks) and the Gemm/MatMul that reads it
gets its weight rows permuted to match. The converted model's input is NHWC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ONNX op -> what it becomes on the device (all in the engine's table, activations fused by the converter).
SUPPORTED_OPS: dict[str, str] = {
    "Conv": "CONV_2D / DEPTHWISE_CONV_2D (group = channels)",
    "Gemm": "FULLY_CONNECTED",
    "MatMul": "FULLY_CONNECTED (constant right operand)",
    "Add": "ADD",
    "Mul": "MUL",
    "Relu": "fused activation",
    "Clip": "fused RELU6 (bounds 0 and 6 only)",
    "Sigmoid": "LOGISTIC",
    "MaxPool": "MAX_POOL_2D",
    "AveragePool": "AVERAGE_POOL_2D",
    "GlobalAveragePool": "MEAN",
    "Flatten": "RESHAPE",
    "Reshape": "RESHAPE",
    "Softmax": "SOFTMAX",
    "Concat": "CONCATENATION",
    "Pad": "PAD (constant zero)",
    "BatchNormalization": "folded into the Conv before it (else MUL + ADD)",
    "Identity": "nothing",
    "Dropout": "nothing (inference)",
    "Constant": "a constant",
}
# Ops a user may well have, with the reason the device cannot take them.
_WHY_NOT = {
    "Tanh": "the device engine has no TANH kernel",
    "LSTM": "recurrent layers are not in the device engine",
    "GRU": "recurrent layers are not in the device engine",
    "Transpose": "the device engine has no TRANSPOSE kernel",
}


class OnnxImportError(ValueError):
    """The ONNX model cannot become a device model; str() is the one line users see."""


@dataclass
class OnnxGraph:
    model: Any  # onnx.ModelProto
    input_name: str
    input_shape: tuple[int, ...]  # ONNX layout, without the batch dimension
    output_names: list[str]
    opset: int
    consumers: dict[str, int] = field(default_factory=dict)


def load(source: Path | bytes) -> OnnxGraph:
    """Parse and check an ONNX model; OnnxImportError (one line) for anything unusable."""
    import onnx

    label = source.name if isinstance(source, Path) else "the ONNX model"
    try:
        raw = source.read_bytes() if isinstance(source, Path) else source
        model = onnx.load_model_from_string(raw)
    except OSError as exc:
        raise OnnxImportError(f"cannot read {label}: {exc.strerror or exc}") from None
    except Exception as exc:  # protobuf's DecodeError: not an ONNX file at all
        raise _invalid(label, exc) from None
    graph = model.graph
    if not graph.node and not graph.input:  # protobuf parses many byte strings as an empty message
        raise OnnxImportError(f"{label} is not a valid ONNX model: it holds no graph")
    unsupported = []
    for i, node in enumerate(graph.node):
        custom = node.domain not in ("", "ai.onnx")
        if custom or node.op_type not in SUPPORTED_OPS:
            where = f" [domain {node.domain}]" if custom else ""
            why = f": {_WHY_NOT[node.op_type]}" if node.op_type in _WHY_NOT and not custom else ""
            unsupported.append(f"{node.op_type}{where} (node '{node.name or f'#{i}'}'{why})")
    if unsupported:
        raise OnnxImportError(
            f"{label} uses ONNX ops the device engine cannot run: {', '.join(unsupported)}; "
            f"supported: {', '.join(SUPPORTED_OPS)}"
        )
    try:  # after the op scan: a graph with unknown ops fails the checker with a less useful message
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx's ValidationError and friends
        raise _invalid(label, exc) from None
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise OnnxImportError(f"{label} has {len(inputs)} inputs; a device model takes exactly one")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) if d.HasField("dim_value") else 0 for d in dims)
    if len(shape) not in (2, 4) or 0 in shape[1:]:
        raise OnnxImportError(
            f"{label}: input '{inputs[0].name}' has shape {list(shape)}; need [batch, features] or"
            " [batch, channels, height, width] with fixed sizes after the batch"
        )
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=13)
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    return OnnxGraph(model, inputs[0].name, shape[1:], [o.name for o in graph.output], opset, consumers)


def _invalid(label: str, exc: Exception) -> OnnxImportError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return OnnxImportError(f"{label} is not a valid ONNX model: {first}")


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """Data given in ONNX layout -> the converted model's layout (only 4-D arrays change)."""
    return np.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x


def to_nchw(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 3, 1, 2)) if x.ndim == 4 else x


def to_keras(g: OnnxGraph) -> Any:
    """The Keras model computing what the ONNX graph computes (batch fixed to 1 later by the converter)."""
    import keras

    from tinyfleet.ml.onnx_layers import Translator

    return Translator(g, keras).build()
