"""Random int16/int32 QUANTIZE (requantize; float32 -> int16) and int8 -> int16 SOFTMAX models for the
engine's differential testing against TFLM, and their comparison over the input type's range; used by
tests/device/test_engine_ops_quant16.py and bench/engine_differential_ops.py --quant16.

Models are written as flatbuffers with the schema's object API (as engine_svdf_models.py) and named
`quant16-seed`: an input of int8, int16, int32 or float32, one QUANTIZE to another of TFLM's accepted
types, and, from an int8 tensor, sometimes a SOFTMAX with int16 output (zero point -32768, scale 1/65536
or the keyword model's 1/65535) followed by a QUANTIZE of that int16 to int8 or int32, as at the end of
the keyword model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.support.tflite_build import ModelBuilder, schema

FAMILY = "quant16"
# float32 inputs: magnitudes up to 1e3, scaled per run over seven decades (rounding and saturation)
RANGES = {"int8": (-128, 127), "int16": (-32768, 32767), "int32": (-(2**20), 2**20), "float32": (-1e3, 1e3)}


def _type(s: Any, name: str) -> int:
    return int(getattr(s.TensorType, name.upper()))


def _zp(rng: np.random.Generator, name: str) -> int:
    if name == "int8":
        return int(rng.integers(-128, 128))
    if name == "int16":
        return 0 if rng.random() < 0.5 else int(rng.integers(-32768, 32768))
    return 0 if rng.random() < 0.7 else int(rng.integers(-1000, 1001))


def build_model(name: str) -> bytes:
    """The model `quant16-seed`: the same bytes for the same name."""
    family, seed_text = name.rsplit("-", 1)
    assert family == FAMILY, name
    s = schema()
    rng = np.random.default_rng([int(seed_text), 114])
    m = ModelBuilder(s)
    shape = [1, int(rng.integers(1, 40))] if rng.random() < 0.7 else [2, int(rng.integers(1, 12))]
    ops: list[tuple[int, list[int], list[int], Any]] = []  # (code index, inputs, outputs, options)
    in_type = str(rng.choice(["int8", "int16", "int32", "float32"]))
    allowed = {
        "int8": ["int8", "int16", "int32"],
        "int16": ["int8", "int16", "int32"],
        "int32": ["int8", "int16"],
        "float32": ["int8", "int16"],
    }
    out_type = str(rng.choice(allowed[in_type]))
    in_scale = float(10 ** rng.uniform(-5, 0))
    if in_type == "float32":
        x = m.tensor(shape, _type(s, in_type), None)
    else:
        x = m.tensor(shape, _type(s, in_type), in_scale, _zp(rng, in_type))
    graph_in = x
    # output scale within a few decades of the input's, where requantizing neither vanishes nor saturates
    out_scale = float(np.float32(in_scale * 10 ** rng.uniform(-2, 2)))
    y = m.tensor(shape, _type(s, out_type), out_scale, _zp(rng, out_type))
    ops.append((0, [x], [y], None))
    x = y
    if out_type == "int8" and rng.random() < 0.6:
        y = m.tensor(shape, _type(s, "int16"), float(rng.choice([1 / 65536, 1 / 65535])), -32768)
        opts = s.SoftmaxOptionsT()
        opts.beta = float(rng.choice([1.0, 1.0, 0.5, 2.0]))
        ops.append((1, [x], [y], opts))
        x = y
        last = str(rng.choice(["int8", "int32"]))
        y = m.tensor(
            shape, _type(s, last), float(np.float32(3e-5 * 10 ** rng.uniform(-1, 2))), _zp(rng, last)
        )
        ops.append((0, [x], [y], None))
        x = y
    codes = [m.opcode(s.BuiltinOperator.QUANTIZE), m.opcode(s.BuiltinOperator.SOFTMAX)]
    operators = []
    for index, inputs, outputs, opts in ops:
        op = s.OperatorT()
        op.opcodeIndex = index
        op.inputs, op.outputs = inputs, outputs
        if opts is not None:
            op.builtinOptionsType = s.BuiltinOptions.SoftmaxOptions
            op.builtinOptions = opts
        operators.append(op)
    return m.finish(codes, operators, [graph_in], [x], "tinyfleet quant16 differential model")


def model_names(count: int, first_seed: int = 0) -> list[str]:
    return [f"{FAMILY}-{seed}" for seed in range(first_seed, first_seed + count)]


def compare_typed(model: bytes, runs: int, seed: int = 0) -> int:
    """Engine and TFLM on random inputs over the input type's range (run 0 its minimum, run 1 its
    maximum); returns the number of runs whose output bytes differ."""
    from tflite_micro.python.tflite_micro import runtime

    from tinyfleet.device.engine import Engine

    engine = Engine(model)
    interp = runtime.Interpreter.from_bytes(model)
    rng = np.random.default_rng(seed)
    info = engine.input_info(0)
    lo, hi = RANGES[np.dtype(info.dtype).name]
    differ = 0
    for run in range(runs):
        if run < 2:
            x = np.full(info.shape, lo if run == 0 else hi, info.dtype)
        elif info.dtype == np.float32:
            x = (rng.standard_normal(info.shape) * 10 ** rng.uniform(-4, 3)).astype(np.float32)
        else:
            x = rng.integers(int(lo), int(hi) + 1, size=info.shape).astype(info.dtype)
        engine.set_input(0, x)
        interp.set_input(x, 0)
        engine.invoke()
        interp.invoke()
        ours, theirs = engine.get_output(0), interp.get_output(0)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        differ += ours.tobytes() != theirs.tobytes()
    return differ
