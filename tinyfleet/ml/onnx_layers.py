"""The op-by-op half of the ONNX -> Keras translation (onnx_import.py holds the why and the op set).

Each ONNX tensor becomes a `_Value`: a Keras tensor or a constant, with the layout that tells how it
relates to the ONNX tensor (NCHW maps are held NHWC; a flattened map keeps NHWC order)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyfleet.ml.onnx_import import OnnxGraph, OnnxImportError


@dataclass
class _Value:
    """A translated tensor: the Keras tensor or a constant, and how its layout relates to ONNX's."""

    tensor: Any = None
    const: np.ndarray | None = None
    layout: str = "plain"  # "nhwc": an NCHW map held as NHWC; "flat_nhwc": its Flatten, in NHWC order
    chw: tuple[int, int, int] = (0, 0, 0)  # for flat_nhwc: the (C, H, W) it was flattened from


class Translator:
    def __init__(self, g: OnnxGraph, keras: Any) -> None:
        from onnx import numpy_helper

        self.g = g
        self.k = keras
        self.values: dict[str, _Value] = {}
        for t in g.model.graph.initializer:
            self.values[t.name] = _Value(const=numpy_helper.to_array(t))
        self.numpy_helper = numpy_helper

    def build(self) -> Any:
        k = self.k
        shape = self.g.input_shape
        keras_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
        inp = k.Input(shape=keras_shape, name="input")
        self.values[self.g.input_name] = _Value(inp, layout="nhwc" if len(shape) == 3 else "plain")
        nodes = list(self.g.model.graph.node)
        skip: set[int] = set()
        for i, node in enumerate(nodes):
            if i in skip:
                continue
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if self._fuses_with(node, nxt):
                assert nxt is not None
                skip.add(i + 1)
                self._run(node, nxt)
            else:
                self._run(node, None)
        outputs = []
        for name in self.g.output_names:
            value = self.values[name]
            if value.tensor is None or value.layout == "flat_nhwc":
                raise OnnxImportError(
                    f"output '{name}' is a constant or a flattened feature map; end the model in a Gemm,"
                    " MatMul, Softmax or a feature map"
                )
            outputs.append(value.tensor)
        return k.Model(inp, outputs[0] if len(outputs) == 1 else outputs)

    # ----- helpers -------------------------------------------------------------------------------------

    def _fuses_with(self, node: Any, nxt: Any) -> bool:
        """MatMul + Add(bias) -> one Dense; Conv + BatchNormalization -> one Conv with folded weights."""
        if nxt is None or self.g.consumers.get(node.output[0], 0) != 1 or node.output[0] not in nxt.input:
            return False
        if node.op_type == "MatMul" and nxt.op_type == "Add":
            other = [n for n in nxt.input if n != node.output[0]]
            return len(other) == 1 and self._is_const(other[0]) and self._const(other[0]).ndim == 1
        return bool(
            node.op_type == "Conv" and nxt.op_type == "BatchNormalization" and nxt.input[0] == node.output[0]
        )

    def _is_const(self, name: str) -> bool:
        return name in self.values and self.values[name].const is not None

    def _const(self, name: str) -> np.ndarray:
        value = self.values.get(name)
        if value is None or value.const is None:
            raise OnnxImportError(f"'{name}' must be a constant (an initializer) for the device model")
        return value.const

    def _attrs(self, node: Any) -> dict[str, Any]:
        import onnx

        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _in(self, name: str) -> _Value:
        if name not in self.values:
            raise OnnxImportError(f"tensor '{name}' is used before it is computed")
        return self.values[name]

    def _fail(self, node: Any, why: str) -> OnnxImportError:
        return OnnxImportError(f"{node.op_type} node '{node.name}': {why}")

    # ----- ops -----------------------------------------------------------------------------------------

    def _run(self, node: Any, fused: Any) -> None:
        op = node.op_type
        a = self._attrs(node)
        out = (fused or node).output[0]
        if op == "Constant":
            self.values[out] = _Value(const=self.numpy_helper.to_array(a["value"]))
        elif op in ("Identity", "Dropout"):
            self.values[out] = self._in(node.input[0])
        elif op == "Conv":
            self.values[out] = self._conv(node, a, fused)
        elif op in ("Gemm", "MatMul"):
            self.values[out] = self._dense(node, a, fused)
        elif op in ("Relu", "Clip", "Sigmoid"):
            self.values[out] = self._activation(node, a)
        elif op in ("MaxPool", "AveragePool"):
            self.values[out] = self._pool(node, a)
        elif op == "GlobalAveragePool":
            x = self._map(node, 0)
            pooled = self.k.layers.GlobalAveragePooling2D(keepdims=True)(x.tensor)
            self.values[out] = _Value(pooled, layout="nhwc")
        elif op in ("Flatten", "Reshape"):
            self.values[out] = self._reshape(node, a)
        elif op in ("Add", "Mul"):
            self.values[out] = self._binary(node)
        elif op == "Softmax":
            x = self._in(node.input[0])
            if x.layout != "plain" or len(x.tensor.shape) != 2:
                raise self._fail(node, "only a Softmax over [batch, classes] is supported")
            self.values[out] = _Value(self.k.layers.Softmax(axis=-1)(x.tensor))
        elif op == "Concat":
            self.values[out] = self._concat(node, a)
        elif op == "Pad":
            self.values[out] = self._pad(node, a)
        elif op == "BatchNormalization":
            self.values[out] = self._batchnorm(node, a)
        else:  # load() refused it already; kept so a new SUPPORTED_OPS entry cannot be silently ignored
            raise self._fail(node, "not translated")

    def _map(self, node: Any, index: int) -> _Value:
        x = self._in(node.input[index])
        if x.layout != "nhwc":
            raise self._fail(node, "needs a feature map [batch, channels, height, width]")
        return x

    def _spatial_padding(
        self, node: Any, a: dict[str, Any], x: Any, kernel: tuple[int, int]
    ) -> tuple[str, Any]:
        """'same' or 'valid' for Keras, plus explicit pads ((t, b), (l, r)) when neither matches ONNX's."""
        strides = tuple(a.get("strides", (1, 1)))
        dil = tuple(a.get("dilations", (1, 1)))
        h, w = int(x.shape[1]), int(x.shape[2])
        same = []
        for size, k, s, d in ((h, kernel[0], strides[0], dil[0]), (w, kernel[1], strides[1], dil[1])):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            same.append((total // 2, total - total // 2))  # TF 'same' puts the extra row at the end
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto == "VALID":
            return "valid", None
        if auto == "SAME_UPPER":
            return "same", None
        if auto == "SAME_LOWER":
            pads = tuple((b, t) for t, b in same)
        else:
            p = tuple(a.get("pads", (0, 0, 0, 0)))
            pads = ((p[0], p[2]), (p[1], p[3]))
        if pads == ((0, 0), (0, 0)):
            return "valid", None
        if pads == tuple(same):
            return "same", None
        return "valid", pads

    def _conv(self, node: Any, a: dict[str, Any], bn: Any) -> _Value:
        k = self.k
        x = self._map(node, 0)
        w = self._const(node.input[1]).astype(np.float32)  # (out, in/group, kh, kw)
        if w.ndim != 4:
            raise self._fail(node, "only 2-D convolutions are supported")
        out_ch = w.shape[0]
        b = self._const(node.input[2]).astype(np.float32) if len(node.input) > 2 and node.input[2] else None
        bias = b if b is not None else np.zeros(out_ch, np.float32)
        if bn is not None:  # fold: y = gamma * (conv - mean) / sqrt(var + eps) + beta
            scale, shift = self._bn_affine(bn)
            w = w * scale[:, None, None, None]
            bias = bias * scale + shift
        group = int(a.get("group", 1))
        in_ch = int(x.tensor.shape[3])
        kernel = (int(w.shape[2]), int(w.shape[3]))
        padding, pads = self._spatial_padding(node, a, x.tensor, kernel)
        t = x.tensor
        if pads is not None:
            t = k.layers.ZeroPadding2D(pads)(t)
        common = {
            "strides": tuple(a.get("strides", (1, 1))),
            "dilation_rate": tuple(a.get("dilations", (1, 1))),
            "padding": padding,
        }
        if group == 1:
            layer = k.layers.Conv2D(out_ch, kernel, **common)
            layer.build(t.shape)
            layer.set_weights([np.transpose(w, (2, 3, 1, 0)), bias])
        elif group == in_ch and out_ch % in_ch == 0:
            mult = out_ch // in_ch
            layer = k.layers.DepthwiseConv2D(kernel, depth_multiplier=mult, **common)
            layer.build(t.shape)
            # ONNX output channel c*mult + m reads input channel c: Keras' (kh, kw, in, mult) is that order.
            dw = np.transpose(w.reshape(in_ch, mult, kernel[0], kernel[1]), (2, 3, 0, 1))
            layer.set_weights([dw, bias])
        else:
            raise self._fail(
                node, f"grouped convolution with group={group} (only 1 or depthwise) is not supported"
            )
        return _Value(layer(t), layout="nhwc")

    def _bn_affine(self, node: Any) -> tuple[np.ndarray, np.ndarray]:
        eps = float(self._attrs(node).get("epsilon", 1e-5))
        gamma, beta, mean, var = (self._const(n).astype(np.float32) for n in node.input[1:5])
        scale = gamma / np.sqrt(var + eps)
        return scale, beta - mean * scale

    def _dense(self, node: Any, a: dict[str, Any], add: Any) -> _Value:
        x = self._in(node.input[0])
        if x.layout == "nhwc" or len(x.tensor.shape) != 2:
            raise self._fail(node, "needs a [batch, features] input; Flatten the feature map first")
        w = self._const(node.input[1]).astype(np.float32)
        if w.ndim != 2:
            raise self._fail(node, "the weight must be a 2-D constant")
        bias = np.zeros(0, np.float32)
        if node.op_type == "Gemm":
            if a.get("transA", 0):
                raise self._fail(node, "transA=1 is not supported")
            w = (w.T if a.get("transB", 0) else w) * float(a.get("alpha", 1.0))
            if len(node.input) > 2 and node.input[2]:
                bias = self._const(node.input[2]).astype(np.float32).reshape(-1) * float(a.get("beta", 1.0))
        elif add is not None:
            bias = self._const(next(n for n in add.input if n != node.output[0])).astype(np.float32)
        units = w.shape[1]
        if bias.size not in (0, 1, units):
            raise self._fail(node, f"bias of {bias.size} values for {units} outputs")
        bias = (
            np.broadcast_to(bias, (units,)).astype(np.float32) if bias.size else np.zeros(units, np.float32)
        )
        if x.layout == "flat_nhwc":  # ONNX flattened C,H,W; this tensor holds H,W,C: reorder the rows
            c, h, wd = x.chw
            w = w.reshape(c, h, wd, units).transpose(1, 2, 0, 3).reshape(-1, units)
        if w.shape[0] != int(x.tensor.shape[1]):
            raise self._fail(node, f"weight has {w.shape[0]} rows for {x.tensor.shape[1]} inputs")
        layer = self.k.layers.Dense(units)
        layer.build(x.tensor.shape)
        layer.set_weights([w, bias])
        return _Value(layer(x.tensor))

    def _activation(self, node: Any, a: dict[str, Any]) -> _Value:
        x = self._in(node.input[0])
        layers = self.k.layers
        if node.op_type == "Relu":
            t = layers.ReLU()(x.tensor)
        elif node.op_type == "Sigmoid":
            t = layers.Activation("sigmoid")(x.tensor)
        else:
            lo = a.get(
                "min", float(self._const(node.input[1])) if len(node.input) > 1 and node.input[1] else None
            )
            hi = a.get(
                "max", float(self._const(node.input[2])) if len(node.input) > 2 and node.input[2] else None
            )
            if lo != 0.0 or hi not in (6.0, None):
                raise self._fail(
                    node, f"only Clip(0, 6) (ReLU6) or Clip(0) is supported, got Clip({lo}, {hi})"
                )
            t = layers.ReLU(max_value=hi)(x.tensor)
        return _Value(t, layout=x.layout, chw=x.chw)

    def _pool(self, node: Any, a: dict[str, Any]) -> _Value:
        x = self._map(node, 0)
        kernel = tuple(int(v) for v in a["kernel_shape"])
        if len(kernel) != 2 or tuple(a.get("dilations", (1, 1))) != (1, 1) or a.get("ceil_mode", 0):
            raise self._fail(node, "only 2-D pooling without dilation or ceil_mode is supported")
        padding, pads = self._spatial_padding(node, a, x.tensor, kernel)
        if pads is not None or (
            node.op_type == "AveragePool" and a.get("count_include_pad", 0) and padding == "same"
        ):
            # TF pools skip padded cells; other ONNX paddings need pad values the engine cannot use.
            raise self._fail(
                node, "only no padding or TF-'same' padding (excluded from averages) is supported"
            )
        cls = self.k.layers.MaxPooling2D if node.op_type == "MaxPool" else self.k.layers.AveragePooling2D
        strides = tuple(a.get("strides", (1, 1)))  # ONNX pools default to stride 1, Keras to the window
        return _Value(cls(kernel, strides=strides, padding=padding)(x.tensor), layout="nhwc")

    def _reshape(self, node: Any, a: dict[str, Any]) -> _Value:
        x = self._in(node.input[0])
        dims = [int(d) for d in x.tensor.shape[1:]]
        if node.op_type == "Flatten":
            if int(a.get("axis", 1)) != 1:
                raise self._fail(node, "only Flatten(axis=1) is supported")
            target = [1, -1]
        else:
            target = [int(v) for v in self._const(node.input[1]).reshape(-1)]
        size = int(np.prod(dims))
        flat = len(target) == 2 and (target[1] in (-1, size)) and target[0] in (0, 1, -1)
        if x.layout == "nhwc":
            if not flat:
                raise self._fail(node, "a feature map can only be flattened to [batch, features]")
            h, w, c = dims
            flat_t = self.k.layers.Flatten()(x.tensor)
            if h == w == 1:  # a 1x1 map (after global pooling) flattens to the same order either way
                return _Value(flat_t)
            return _Value(flat_t, layout="flat_nhwc", chw=(c, h, w))
        if x.layout == "flat_nhwc" and not flat:
            raise self._fail(node, "a flattened feature map cannot be reshaped again")
        if target[0] not in (0, 1, -1):
            raise self._fail(node, f"the batch dimension must stay (shape {target})")
        rest = [dims[i] if v == 0 and i < len(dims) else v for i, v in enumerate(target[1:])]
        if len(rest) not in (1, 3):
            raise self._fail(node, f"reshape to rank {len(target)} is not supported")
        if x.layout == "flat_nhwc" or rest == dims:
            return x
        if len(rest) == 3:  # a vector reshaped to C,H,W: hold it as H,W,C needs a transpose the engine lacks
            raise self._fail(node, "reshaping a vector into a feature map is not supported")
        return _Value(self.k.layers.Reshape(tuple(rest))(x.tensor))

    def _const_like(self, node: Any, c: np.ndarray, x: _Value) -> np.ndarray:
        """An ONNX-layout constant broadcast against x, in x's layout."""
        c = c.astype(np.float32)
        if x.layout == "nhwc":
            if c.ndim > 4:
                raise self._fail(node, "constant of rank > 4")
            c4 = c.reshape((1,) * (4 - c.ndim) + c.shape)
            return np.transpose(c4, (0, 2, 3, 1))
        if x.layout == "flat_nhwc" and c.size > 1:
            raise self._fail(node, "a per-element constant on a flattened feature map is not supported")
        return c

    def _binary(self, node: Any) -> _Value:
        ops = self.k.ops
        names = list(node.input)
        consts = [self._is_const(n) for n in names]
        if all(consts):
            raise self._fail(node, "both operands are constants")
        fn = ops.add if node.op_type == "Add" else ops.multiply
        if any(consts):
            x = self._in(names[consts.index(False)])
            c = self._const_like(node, self._const(names[consts.index(True)]), x)
            return _Value(fn(x.tensor, c), layout=x.layout, chw=x.chw)
        left, right = self._in(names[0]), self._in(names[1])
        if left.layout != right.layout or tuple(left.tensor.shape) != tuple(right.tensor.shape):
            raise self._fail(node, "operands must have the same shape")
        layer = self.k.layers.Add() if node.op_type == "Add" else self.k.layers.Multiply()
        return _Value(layer([left.tensor, right.tensor]), layout=left.layout, chw=left.chw)

    def _concat(self, node: Any, a: dict[str, Any]) -> _Value:
        parts = [self._in(n) for n in node.input]
        layouts = {p.layout for p in parts}
        rank = len(parts[0].tensor.shape)
        axis = int(a["axis"]) % rank
        if layouts == {"nhwc"} and axis == 1:
            return _Value(self.k.layers.Concatenate(axis=-1)([p.tensor for p in parts]), layout="nhwc")
        if layouts == {"plain"} and axis == rank - 1:
            return _Value(self.k.layers.Concatenate(axis=-1)([p.tensor for p in parts]))
        raise self._fail(node, "only channel concatenation of feature maps or of vectors is supported")

    def _pad(self, node: Any, a: dict[str, Any]) -> _Value:
        x = self._map(node, 0)
        mode = a.get("mode", b"constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            raise self._fail(node, "only constant padding is supported")
        pads = a["pads"] if "pads" in a else self._const(node.input[1]).tolist()
        value = float(a.get("value", 0.0))
        if len(node.input) > 2 and node.input[2]:
            value = float(self._const(node.input[2]).reshape(-1)[0])
        pads = [int(p) for p in pads]
        if value != 0.0 or len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)):
            raise self._fail(node, "only zero padding of height and width is supported")
        t = self.k.layers.ZeroPadding2D(((pads[2], pads[6]), (pads[3], pads[7])))(x.tensor)
        return _Value(t, layout="nhwc")

    def _batchnorm(self, node: Any, a: dict[str, Any]) -> _Value:
        x = self._in(node.input[0])
        scale, shift = self._bn_affine(node)
        shape = (-1, 1, 1) if x.layout == "nhwc" else (-1,)
        s = self._const_like(node, scale.reshape(shape), x)
        b = self._const_like(node, shift.reshape(shape), x)
        return _Value(self.k.ops.add(self.k.ops.multiply(x.tensor, s), b), layout=x.layout, chw=x.chw)
