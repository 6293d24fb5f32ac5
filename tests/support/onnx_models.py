"""Small ONNX models built here with `onnx.helper` (nothing downloaded): a conv net on the bundled 8x8
digits and an MLP on the generated vibration spectra. Hidden weights are random with a fixed seed; the
readout is fitted by least squares on the hidden features (computed by onnxruntime), so the models
classify well enough that "accuracy before and after" means something."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tinyfleet.ml import datasets

OPSET = 13


def _init(name: str, value: np.ndarray) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(value), name)


def _model(nodes: list[Any], inits: list[Any], in_shape: list[Any], out: str, out_shape: list[Any]) -> Any:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "tinyfleet-test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by any onnxruntime of the last years
    onnx.checker.check_model(model)
    return model


def _features(model: Any, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"x": row[np.newaxis]})[0] for row in x]).reshape(len(x), -1)


def _readout(features: np.ndarray, y: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares weights (features -> scaled one-hot), the classic random-features classifier."""
    design = np.hstack([features, np.ones((len(features), 1), np.float32)])
    target = np.eye(classes, dtype=np.float32)[y] * 4.0
    solution, *_ = np.linalg.lstsq(design, target, rcond=1e-3)
    return solution[:-1].astype(np.float32), solution[-1].astype(np.float32)


def conv_net(rng_seed: int = 0) -> tuple[Any, np.ndarray, np.ndarray]:
    """Conv+BN+Relu, depthwise Conv+Clip(0,6), residual Add, MaxPool, Flatten, Gemm, Softmax on digits.
    Returns (model, x in NCHW, y)."""
    from onnx import helper

    data = datasets.load("digits")
    x = np.transpose(data.x, (0, 3, 1, 2)).astype(np.float32)  # ONNX layout: N, C, H, W
    y = data.y
    rng = np.random.default_rng(rng_seed)
    ch = 8
    inits = [
        _init("w1", rng.normal(0, 0.5, (ch, 1, 3, 3)).astype(np.float32)),
        _init("b1", rng.normal(0, 0.1, ch).astype(np.float32)),
        _init("bn_g", rng.uniform(0.8, 1.2, ch).astype(np.float32)),
        _init("bn_b", rng.normal(0, 0.1, ch).astype(np.float32)),
        _init("bn_m", rng.normal(0, 0.1, ch).astype(np.float32)),
        _init("bn_v", rng.uniform(0.5, 1.5, ch).astype(np.float32)),
        _init("wd", rng.normal(0, 0.4, (ch, 1, 3, 3)).astype(np.float32)),
        _init("bd", rng.normal(0, 0.1, ch).astype(np.float32)),
        _init("clip_lo", np.array(0.0, np.float32)),
        _init("clip_hi", np.array(6.0, np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_g", "bn_b", "bn_m", "bn_v"], ["n1"], name="bn1"),
        helper.make_node("Relu", ["n1"], ["a"], name="relu1"),
        helper.make_node("Conv", ["a", "wd", "bd"], ["d1"], name="dw", group=ch, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["d1", "clip_lo", "clip_hi"], ["b"], name="relu6"),
        helper.make_node("Add", ["a", "b"], ["c"], name="residual"),
        helper.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
    ]
    features = _features(_model(nodes, inits, ["N", 1, 8, 8], "f", ["N", ch * 16]), x)
    w, b = _readout(features, y, 10)
    inits += [_init("wo", w.T.copy()), _init("bo", b)]  # Gemm with transB=1: weight is (out, in)
    nodes += [
        helper.make_node("Gemm", ["f", "wo", "bo"], ["logits"], name="readout", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
    ]
    return _model(nodes, inits, ["N", 1, 8, 8], "probs", ["N", 10]), x, y


def mlp(rng_seed: int = 0, samples: int = 800) -> tuple[Any, np.ndarray, np.ndarray]:
    """Mul (input scaling), MatMul+Add, Relu, Gemm, Sigmoid, Gemm, Softmax on vibration spectra."""
    from onnx import helper

    data = datasets.load("vibration", samples=samples, seed=rng_seed)
    x, y = data.x.astype(np.float32), data.y
    rng = np.random.default_rng(rng_seed)
    width, hidden = x.shape[1], 48
    inits = [
        _init("scale", (1.0 / (x.std(axis=0) + 1e-3)).astype(np.float32)),
        _init("w1", rng.normal(0, 1.0 / np.sqrt(width), (width, hidden)).astype(np.float32)),
        _init("b1", rng.normal(0, 0.1, hidden).astype(np.float32)),
        _init("w2", rng.normal(0, 1.0 / np.sqrt(hidden), (hidden, hidden)).astype(np.float32)),
        _init("b2", rng.normal(0, 0.1, hidden).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["xs"], name="normalize"),
        helper.make_node("MatMul", ["xs", "w1"], ["h1"], name="dense1"),
        helper.make_node("Add", ["h1", "b1"], ["h1b"], name="dense1_bias"),
        helper.make_node("Relu", ["h1b"], ["a1"], name="relu1"),
        helper.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], name="dense2"),
        helper.make_node("Sigmoid", ["h2"], ["a2"], name="sigmoid2"),
    ]
    features = _features(_model(nodes, inits, ["N", width], "a2", ["N", hidden]), x)
    w, b = _readout(features, y, len(data.class_names))
    inits += [_init("wo", w), _init("bo", b)]
    nodes += [
        helper.make_node("Gemm", ["a2", "wo", "bo"], ["logits"], name="readout"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax"),
    ]
    return _model(nodes, inits, ["N", width], "probs", ["N", len(data.class_names)]), x, y


def op_zoo(rng_seed: int = 0, samples: int = 160) -> tuple[Any, np.ndarray]:
    """The rest of the op set, random weights, on random [N, 2, 9, 9] inputs: Pad, strided Conv with
    TF-'same' pads, per-channel Mul/Add constants, depthwise with multiplier 2 and asymmetric pads,
    standalone BatchNormalization, MaxPool with ONNX's default stride 1, AveragePool, GlobalAveragePool,
    Flatten of a map into MatMul, Concat, Gemm with alpha/beta, Reshape by a Constant node, Identity,
    Dropout, Softmax. Returns (model, x)."""
    from onnx import helper

    rng = np.random.default_rng(rng_seed)
    x = rng.normal(0, 1, (samples, 2, 9, 9)).astype(np.float32)

    def r(*shape: int, scale: float = 0.5) -> np.ndarray:
        return rng.normal(0, scale, shape).astype(np.float32)

    inits = [
        _init("pads", np.array([0, 0, 1, 2, 0, 0, 1, 0], np.int64)),
        _init("wa", r(4, 2, 3, 3)),
        _init("ba", r(4, scale=0.1)),
        _init("ch_scale", rng.uniform(0.5, 1.5, (4, 1, 1)).astype(np.float32)),
        _init("ch_shift", r(1, 4, 1, 1, scale=0.2)),
        _init("wd", r(8, 1, 3, 3)),
        _init("bd", r(8, scale=0.1)),
        _init("bn_g", rng.uniform(0.8, 1.2, 8).astype(np.float32)),
        _init("bn_b", r(8, scale=0.1)),
        _init("bn_m", r(8, scale=0.1)),
        _init("bn_v", rng.uniform(0.5, 1.5, 8).astype(np.float32)),
        _init("wm", r(32, 6, scale=0.2)),
        _init("wg", r(14, 5)),
        _init("bg", r(5, scale=0.1)),
    ]
    shape = _init("shape_value", np.array([1, -1], np.int64))
    nodes = [
        helper.make_node("Constant", [], ["shape"], name="flat_shape", value=shape),
        helper.make_node("Pad", ["x", "pads"], ["xp0"], name="pad", mode="constant"),  # 2 x 11 x 11
        helper.make_node("Identity", ["xp0"], ["xp"], name="identity"),
        helper.make_node(
            "Conv", ["xp", "wa", "ba"], ["ca"], name="conv_s2", strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Mul", ["ca", "ch_scale"], ["cm"], name="per_channel_mul"),
        helper.make_node("Add", ["cm", "ch_shift"], ["cs"], name="per_channel_add"),
        helper.make_node("Relu", ["cs"], ["ra"], name="relu_a"),  # 4 x 6 x 6
        helper.make_node("Conv", ["ra", "wd", "bd"], ["dw"], name="dw_x2", group=4, pads=[0, 0, 2, 2]),
        helper.make_node("Relu", ["dw"], ["rd0"], name="relu_d"),  # 8 x 6 x 6
        helper.make_node("Dropout", ["rd0"], ["rd"], name="dropout"),
        helper.make_node("BatchNormalization", ["rd", "bn_g", "bn_b", "bn_m", "bn_v"], ["bn"], name="bn"),
        helper.make_node("MaxPool", ["bn"], ["mp"], name="max_stride1", kernel_shape=[2, 2]),  # 8 x 5 x 5
        helper.make_node("AveragePool", ["mp"], ["ap"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["ap"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["gf"], name="gap_flat"),  # 8
        helper.make_node("Reshape", ["ap", "shape"], ["af"], name="map_flat"),  # 32, NCHW order
        helper.make_node("MatMul", ["af", "wm"], ["mm"], name="matmul_no_bias"),  # 6
        helper.make_node("Concat", ["gf", "mm"], ["cat"], name="concat", axis=1),  # 14
        helper.make_node("Gemm", ["cat", "wg", "bg"], ["logits"], name="gemm_ab", alpha=0.5, beta=2.0),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax"),
    ]
    return _model(nodes, inits, ["N", 2, 9, 9], "probs", ["N", 5]), x


def with_node(model: Any, node: Any) -> Any:
    """A copy of model with `node` appended after the last node (for unsupported-op tests; not checked)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.node.append(node)
    return copy


def save(model: Any, x: np.ndarray, y: np.ndarray | None, directory: Path, stem: str) -> tuple[Path, Path]:
    onnx_path, data_path = directory / f"{stem}.onnx", directory / f"{stem}.npz"
    onnx_path.write_bytes(model.SerializeToString())
    arrays = {"x": x} if y is None else {"x": x, "y": y}
    np.savez(data_path, **arrays)  # type: ignore[arg-type]
    return onnx_path, data_path
