"""Random int8 SVDF models for the engine's differential testing against TFLM, and their comparison over
sequences of invocations (the activation state carried from one to the next, then reset); used by
tests/device/test_engine_ops_svdf.py and bench/engine_differential_ops.py --svdf.

The TensorFlow converter makes SVDF only from patterns it recognises, so these models are written
directly as TFLite flatbuffers with the schema's generated object API (`schema_py_generated`, shipped
in the TensorFlow wheel and loaded by path: it needs only `flatbuffers`, not TensorFlow). A model is
named `svdf-seed` and built from that name alone, in milliseconds: no cache.
Shapes: 1 or 2 SVDF layers in a chain (the second fed by the first), rank 1 or 2, memory 1..12, batch
1..3, int16 state with int16 time weights (zero point 0) or int8 state with int8 time weights (any zero
point, as in keyword_scrambled_8bit), fused NONE or RELU (which TFLM's integer SVDF does not apply).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tests.support.engine_differential import Difference, compare
from tests.support.tflite_build import ModelBuilder, schema

FAMILY = "svdf"


def _svdf_layer(
    m: ModelBuilder, rng: np.random.Generator, x: int, batch: int, x_scale: float
) -> tuple[int, Any]:
    """One SVDF op on tensor x ([batch, n]); returns its output tensor and the operator."""
    s = m.s
    n_input = m.tensors[x].shape[1]
    rank = int(rng.integers(1, 3))
    units = int(rng.integers(1, 25))
    memory = int(rng.integers(1, 13))
    filters = units * rank
    wide = rng.random() < 0.6  # int16 state and time weights; else int8 ones
    wf_scale = float(10 ** rng.uniform(-3, -1))
    wf = rng.integers(-127, 128, size=(filters, n_input), dtype=np.int8)
    # effective scales over a few decades around where values neither vanish nor always saturate
    s1 = float(10 ** (rng.uniform(-4, -1) if wide else rng.uniform(-5, -2)))
    # scales stay below ~100, where TFLM's bias check (|bias - state x time scale| < 1e-5) holds
    state_scale = min(float(np.float32(x_scale) * np.float32(wf_scale) / np.float32(s1)), 100.0)
    if wide:
        state_zp, wt_type, st_type = 0, s.TensorType.INT16, s.TensorType.INT16
        magnitude = int(10 ** rng.uniform(1, 4.5))
        wt = rng.integers(-magnitude, magnitude + 1, size=(filters, memory)).astype(np.int16)
    else:
        state_zp, wt_type, st_type = int(rng.integers(-128, 128)), s.TensorType.INT8, s.TensorType.INT8
        wt = rng.integers(-127, 128, size=(filters, memory), dtype=np.int8)
    wt_scale = float(10 ** rng.uniform(-4, -1))
    s2 = float(10 ** (rng.uniform(-7, -3) if wide else rng.uniform(-4, -1)))
    bias_scale = float(np.float32(float(np.float32(state_scale)) * float(np.float32(wt_scale))))
    out_scale = min(max(float(np.float32(bias_scale) / np.float32(s2)), 1e-4), 10.0)
    out_zp = int(rng.integers(-128, 128))
    bias = rng.integers(-(10 ** int(rng.integers(1, 6))), 10 ** int(rng.integers(1, 6)), size=units)
    i8, i32 = s.TensorType.INT8, s.TensorType.INT32
    t_wf = m.tensor([filters, n_input], i8, wf_scale, 0, wf)
    t_wt = m.tensor([filters, memory], wt_type, wt_scale, 0, wt)
    t_b = m.tensor([units], i32, bias_scale, 0, bias.astype(np.int32))
    t_st = m.tensor([batch, memory * filters], st_type, state_scale, state_zp, variable=True)
    t_out = m.tensor([batch, units], i8, out_scale, out_zp)
    op = s.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [x, t_wf, t_wt, t_b, t_st]
    op.outputs = [t_out]
    op.builtinOptionsType = s.BuiltinOptions.SVDFOptions
    opts = s.SVDFOptionsT()
    opts.rank = rank
    acts = [s.ActivationFunctionType.NONE, s.ActivationFunctionType.RELU]
    opts.fusedActivationFunction = int(rng.choice(acts))
    op.builtinOptions = opts
    return t_out, op


def build_model(name: str) -> bytes:
    """The model `svdf-seed`: the same bytes for the same name."""
    family, seed_text = name.rsplit("-", 1)
    assert family == FAMILY, name
    s = schema()
    rng = np.random.default_rng([int(seed_text), 27])
    m = ModelBuilder(s)
    batch = 1 if rng.random() < 0.7 else int(rng.integers(2, 4))
    x_scale = float(10 ** rng.uniform(-3, 0))
    x = m.tensor([batch, int(rng.integers(1, 81))], s.TensorType.INT8, x_scale, int(rng.integers(-128, 128)))
    graph_in = x
    ops = []
    for _ in range(1 if rng.random() < 0.6 else 2):
        x, op = _svdf_layer(m, rng, x, batch, x_scale)
        x_scale = m.tensors[x].quantization.scale[0]
        ops.append(op)
    codes = [m.opcode(s.BuiltinOperator.SVDF)]
    return m.finish(codes, ops, [graph_in], [x], "tinyfleet svdf differential model")


def model_names(count: int, first_seed: int = 0) -> list[str]:
    return [f"{FAMILY}-{seed}" for seed in range(first_seed, first_seed + count)]


def compare_with_reset(name: str, model: bytes, runs: int, seed: int = 0) -> list[Difference]:
    """`compare` over `runs` invocations in sequence, then both state resets and `runs` more."""
    from tflite_micro.python.tflite_micro import runtime

    from tinyfleet.device.engine import Engine

    found = compare(name, model, runs, seed=seed)
    engine = Engine(model)
    interp = runtime.Interpreter.from_bytes(model)
    rng = np.random.default_rng(seed + 1)
    shape = engine.input_info(0).shape
    for run in range(2 * runs):
        if run == runs:
            engine.reset()
            interp.reset()
        x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        engine.set_input(0, x)
        interp.set_input(x, 0)
        engine.invoke()
        interp.invoke()
        ours, theirs = engine.get_output(0).astype(np.int32), interp.get_output(0).astype(np.int32)
        if not np.array_equal(ours, theirs):
            diff = np.abs(ours - theirs)
            found.append(Difference(name, runs + run, 0, int(np.count_nonzero(diff)), int(diff.max())))
    return found
