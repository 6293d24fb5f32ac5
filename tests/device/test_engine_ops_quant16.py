"""Differential testing of the engine's int16/int32 QUANTIZE and int8 -> int16 SOFTMAX against TFLM on
random models (tests/support/engine_quant16_models.py), and the whole keyword_scrambled_8bit model that
needs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support.engine_quant16_models import build_model, compare_typed, model_names
from tests.support.tflite_build import pack, require_builder, schema
from tests.support.tflm_arena import tflm_arena_bytes

# --- tests ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared() -> None:
    require_builder()


DEFAULT = model_names(30)


@pytest.mark.parametrize("name", DEFAULT)
def test_random_quant16_model_bit_exact(prepared: None, name: str, tmp_path: Path) -> None:
    from tinyfleet.device.engine import Engine

    model = build_model(name)
    assert compare_typed(model, runs=40) == 0
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(model)
    assert Engine(model).arena_used <= tflm_arena_bytes(path)


def test_generator_covers_type_pairs(prepared: None) -> None:
    s = schema()
    seen: set[tuple[int, int]] = set()
    softmax = 0
    for name in DEFAULT:
        sg = s.ModelT.InitFromPackedBuf(build_model(name), 0).subgraphs[0]
        for op in sg.operators:
            seen.add((sg.tensors[op.inputs[0]].type, sg.tensors[op.outputs[0]].type))
        softmax += len(sg.operators) == 3
    t = s.TensorType
    # every requantize pair of TFLM's reference QUANTIZE, and SOFTMAX's int8 -> int16
    pairs = {(a, b) for a in (t.INT8, t.INT16) for b in (t.INT8, t.INT16, t.INT32)}
    pairs |= {(t.INT32, t.INT8), (t.INT32, t.INT16), (t.FLOAT32, t.INT8), (t.FLOAT32, t.INT16)}
    assert pairs <= seen and softmax >= 3


def test_keyword_model_bit_exact(prepared: None, shared_models: Path) -> None:
    """The whole keyword_scrambled_8bit: int16 input QUANTIZE, 7 SVDF, int8 -> int16 SOFTMAX, int16 ->
    int32 QUANTIZE; its state carried over the invocations, then reset in both."""
    from tflite_micro.python.tflite_micro import runtime

    from tinyfleet.device.engine import Engine

    model = (shared_models / "keyword_scrambled_8bit.tflite").read_bytes()
    engine = Engine(model)
    assert engine.op_names().count("SVDF") == 7 and engine.op_names()[-2:] == ["SOFTMAX", "QUANTIZE"]
    assert compare_typed(model, runs=200, seed=3) == 0
    interp = runtime.Interpreter.from_bytes(model)
    rng = np.random.default_rng(4)
    for run in range(40):
        if run == 20:
            engine.reset()
            interp.reset()
        x = rng.integers(-32768, 32768, size=(1, 96)).astype(np.int16)
        engine.set_input(0, x)
        interp.set_input(x, 0)
        engine.invoke()
        interp.invoke()
        assert engine.get_output(0).tobytes() == interp.get_output(0).tobytes(), run


@pytest.mark.parametrize(("scale", "zp"), [(1 / 32768, -32768), (1 / 65536, 0)])
def test_int16_softmax_outside_tflm_refused(prepared: None, scale: float, zp: int) -> None:
    """An int16 SOFTMAX output off TFLM's zero point -32768 or scale 1/65536 (within 0.1%): TFLM fails to
    prepare it, the engine refuses it by name."""
    from tinyfleet.device.engine import Engine, EngineError
    from tinyfleet.signing.codes import ErrorCode

    s = schema()
    name = next(
        n
        for n in model_names(40)
        if len(s.ModelT.InitFromPackedBuf(build_model(n), 0).subgraphs[0].operators) == 3
    )
    m = s.ModelT.InitFromPackedBuf(build_model(name), 0)
    sg = m.subgraphs[0]
    out = sg.tensors[sg.operators[1].outputs[0]]
    out.quantization.scale, out.quantization.zeroPoint = [scale], [zp]
    with pytest.raises(EngineError) as err:
        Engine(pack(m))
    assert err.value.code == ErrorCode.UNSUPPORTED_OP and err.value.op_name == "SOFTMAX"
