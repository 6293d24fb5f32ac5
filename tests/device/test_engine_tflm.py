"""The C inference engine (agent_firmware/core/engine) against the TFLM reference interpreter:
outputs must match to the bit, the arena must not exceed TFLM's, unsupported models are refused by name.

Models: the real ones in ../shared/models (skipped if absent) and tiny int8 models built here with
TensorFlow, one per op family (built once in a subprocess, cached in the temp directory)."""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.support.model_edits import LSTM, with_operator
from tests.support.paths import REPO
from tests.support.tflm_arena import tflm_arena_bytes
from tinyfleet.device.engine import Engine, EngineError
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.selftest import expected_output_sha256, selftest_input, selftest_inputs

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

SUPPORTED_SHARED = ["hello_world_int8", "micro_speech_quantized", "person_detect", "keyword_scrambled_8bit"]

GEN_SCRIPT = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

out_dir = sys.argv[1]
rng = np.random.default_rng(1)
L = tf.keras.layers


def convert(name, model, float_io=False):
    def rep():
        for _ in range(32):
            yield [rng.normal(0, 1, size=(1, *i.shape[1:])).astype(np.float32) for i in model.inputs]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with open(os.path.join(out_dir, name + ".tflite"), "wb") as f:
        f.write(conv.convert())


tf.keras.utils.set_random_seed(1)
x = L.Input((12, 12, 3), batch_size=1)
y = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
y = L.DepthwiseConv2D(3, depth_multiplier=2, padding="valid", activation="relu")(y)
y = L.AveragePooling2D(2)(y)
y = L.Flatten()(y)
y = L.Dense(5)(y)
convert("conv_dw_avgpool_fc_softmax", tf.keras.Model(x, L.Softmax()(y)))

x = L.Input((11, 9, 4), batch_size=1)
y = L.Conv2D(6, (3, 2), dilation_rate=2, padding="same")(x)
y = L.MaxPooling2D((3, 2), strides=(2, 2), padding="same")(y)
y = L.DepthwiseConv2D((2, 3), strides=(2, 1), padding="same", activation="relu6")(y)
convert("dilated_conv_maxpool_dw", tf.keras.Model(x, y))

a = L.Input((5, 4, 3), batch_size=1)
b = L.Input((5, 4, 3), batch_size=1)
m = L.Multiply()([L.Add()([a, b]), b])
bc = L.Lambda(lambda t: t * tf.constant([0.5, -1.5, 2.0]) + tf.constant([0.25, 0.0, -0.75]))(m)
convert("add_mul_broadcast", tf.keras.Model([a, b], L.ReLU()(bc)))

x = L.Input((16,), batch_size=1)
y = L.Dense(12, activation="sigmoid")(x)
convert("fc_logistic_relu", tf.keras.Model(x, L.Dense(3, activation="relu")(y)))

x = L.Input((6, 6, 2), batch_size=1)
p = L.ZeroPadding2D(((1, 2), (0, 1)))(x)
y = L.Concatenate(axis=-1)([L.Conv2D(3, 1)(p), L.Conv2D(2, 1)(p)])
convert("pad_concat", tf.keras.Model(x, y))

x = L.Input((10,), batch_size=1)
convert("float_io_quantize_dequantize", tf.keras.Model(x, L.Dense(4)(x)), float_io=True)

x = L.Input((4, 4, 3), batch_size=1)
y = L.Lambda(lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=True))(L.Conv2D(5, 1)(x))
convert("mean_hw_keepdims", tf.keras.Model(x, y))
x = L.Input((3, 5, 6), batch_size=1)
convert("mean_last_axis", tf.keras.Model(x, L.Lambda(lambda t: tf.reduce_mean(t, axis=[-1]))(x)))

# MEAN with equal input and output quantization (TFLM still rescales, no truncating division):
# patch the output tensor's scale and zero point to the input's.
import struct
path = os.path.join(out_dir, "mean_last_axis.tflite")
data = bytearray(open(path, "rb").read())
interp = tf.lite.Interpreter(model_content=bytes(data))
in_scale, in_zp = interp.get_input_details()[0]["quantization"]
out_scale, out_zp = interp.get_output_details()[0]["quantization"]
for old, new in ((struct.pack("<f", out_scale), struct.pack("<f", in_scale)),
                 (struct.pack("<q", out_zp), struct.pack("<q", in_zp))):
    assert data.count(old) == 1, "ambiguous patch"
    at = data.index(old)
    data[at:at + len(old)] = new
with open(os.path.join(out_dir, "mean_same_quantization.tflite"), "wb") as f:
    f.write(bytes(data))
"""

# Ops each generated model must contain, so that every kernel is really exercised.
GENERATED = {
    "conv_dw_avgpool_fc_softmax": {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "AVERAGE_POOL_2D",
        "FULLY_CONNECTED",
        "SOFTMAX",
        "RESHAPE",
    },
    "dilated_conv_maxpool_dw": {"CONV_2D", "MAX_POOL_2D", "DEPTHWISE_CONV_2D"},
    "add_mul_broadcast": {"ADD", "MUL"},
    "fc_logistic_relu": {"FULLY_CONNECTED", "LOGISTIC"},
    "pad_concat": {"PAD", "CONCATENATION", "CONV_2D"},
    "float_io_quantize_dequantize": {"QUANTIZE", "DEQUANTIZE", "FULLY_CONNECTED"},
    "mean_hw_keepdims": {"CONV_2D", "MEAN"},
    "mean_last_axis": {"MEAN"},
    "mean_same_quantization": {"MEAN"},
}


@pytest.fixture(scope="session")
def host_lib() -> None:
    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)


@pytest.fixture(scope="session")
def generated_dir(host_lib: None) -> Path:
    pytest.importorskip("tensorflow")
    key = hashlib.sha256(GEN_SCRIPT.encode()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / f"tinyfleet-engine-models-{key}"
    if not all((out / f"{name}.tflite").exists() for name in GENERATED):
        out.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        subprocess.run(
            [sys.executable, "-c", GEN_SCRIPT, str(out)],
            check=True,
            env=env,
            capture_output=True,
            timeout=600,
        )
    return out


def shared_model(shared_models: Path, name: str) -> bytes:
    return (shared_models / f"{name}.tflite").read_bytes()


def random_input(rng: np.random.Generator, dtype: type[np.generic], shape: tuple[int, ...]) -> np.ndarray:
    if dtype == np.float32:
        return rng.normal(0, 2, size=shape).astype(np.float32)
    info = np.iinfo(dtype)  # type: ignore[type-var]
    return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)


def compare_with_tflm(model: bytes, runs: int, seed: int) -> Engine:
    engine = Engine(model)
    interp = runtime.Interpreter.from_bytes(model)
    rng = np.random.default_rng(seed)
    for run in range(runs):
        for i in range(engine.input_count):
            info = engine.input_info(i)
            x = random_input(rng, info.dtype, info.shape)
            if run == 0:  # the extremes too
                x = np.full(info.shape, np.iinfo(np.int8).min if info.dtype == np.int8 else -1e3, info.dtype)
            engine.set_input(i, x)
            interp.set_input(x, i)
        engine.invoke()
        interp.invoke()
        for o in range(engine.output_count):
            ours = engine.get_output(o)
            theirs = interp.get_output(o)
            assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
            assert ours.tobytes() == theirs.tobytes(), f"run {run} output {o}: {ours} != {theirs}"
    return engine


@pytest.mark.parametrize("name", SUPPORTED_SHARED)
def test_shared_models_bit_exact(host_lib: None, name: str, shared_models: Path) -> None:
    engine = compare_with_tflm(shared_model(shared_models, name), runs=100, seed=7)
    assert engine.op_count > 0 and engine.mac_count > 0


@pytest.mark.parametrize("name", SUPPORTED_SHARED)
def test_arena_not_above_tflm(host_lib: None, name: str, shared_models: Path) -> None:
    engine = Engine(shared_model(shared_models, name))
    assert engine.arena_used <= tflm_arena_bytes(shared_models / f"{name}.tflite")


def test_keyword_arena_not_above_tflm(host_lib: None, shared_models: Path) -> None:
    # 54 tensors (31 of them constant) around 5 KiB of SVDF state: the per-tensor records must stay
    # near TFLM's eval tensors (40 B against 24 B on the host), the planning facts off the arena
    engine = Engine(shared_model(shared_models, "keyword_scrambled_8bit"))
    assert engine.arena_used <= tflm_arena_bytes(shared_models / "keyword_scrambled_8bit.tflite")
    assert engine.activation_bytes >= 5120  # the seven SVDF states are all planned, none shared


def test_unsupported_model_refused_by_name(host_lib: None, shared_models: Path) -> None:
    # keyword_scrambled_8bit runs whole; its first operator (a QUANTIZE) turned into an LSTM does not
    quantize = 13  # the model's operator code used by operators #0 and #14
    model = with_operator(shared_model(shared_models, "keyword_scrambled_8bit"), quantize, LSTM)
    with pytest.raises(EngineError) as err:
        Engine(model)
    assert err.value.code == ErrorCode.UNSUPPORTED_OP
    assert err.value.op_name == "UNIDIRECTIONAL_SEQUENCE_LSTM" and err.value.op_code == LSTM
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM (builtin 44, operator #0)" in str(err.value)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_op_models_bit_exact(generated_dir: Path, name: str) -> None:
    model = (generated_dir / f"{name}.tflite").read_bytes()
    engine = compare_with_tflm(model, runs=60, seed=11)
    assert GENERATED[name] <= set(engine.op_names())
    assert engine.selftest_digest(5) == expected_output_sha256(model, 5)  # add_mul_broadcast: 2 inputs
    assert engine.arena_used <= tflm_arena_bytes(generated_dir / f"{name}.tflite")


def test_selftest_digest_matches_python(host_lib: None, shared_models: Path) -> None:
    for name in SUPPORTED_SHARED:
        model = shared_model(shared_models, name)
        engine = Engine(model)
        for seed in (1, 0xDEADBEEF):
            assert engine.selftest_digest(seed) == expected_output_sha256(model, seed)


def test_selftest_input_stream() -> None:
    # xorshift32 from seed 1: 270369, 67634689, ... -> low bytes 0x21, 0x01, ...
    data = selftest_input(1, 3)
    s = 1
    expected = []
    for _ in range(3):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        expected.append(s & 0xFF)
    assert list(data) == expected and data[0] == 270369 & 0xFF
    # Several inputs: one continuing stream cut in order, not a restart per tensor.
    assert selftest_inputs(1, [2, 1]) == [data[:2], data[2:]]
    with pytest.raises(ValueError):
        expected_output_sha256(b"", 0)


@pytest.mark.parametrize("name", SUPPORTED_SHARED)
def test_arena_used_is_exact(host_lib: None, name: str, shared_models: Path) -> None:
    # arena_used is the larger of two needs (activations, or init's planning records at the tail):
    # exactly that many bytes run the model, one fewer does not
    model = shared_model(shared_models, name)
    need = Engine(model).arena_used
    engine = Engine(model, arena_size=need)
    assert engine.arena_used == need
    assert engine.selftest_digest(1) == expected_output_sha256(model, 1)
    with pytest.raises(EngineError) as err:
        Engine(model, arena_size=need - 1)
    assert err.value.code == ErrorCode.ARENA_EXHAUSTED


def test_misaligned_model_refused(host_lib: None, shared_models: Path) -> None:
    # tensor shapes are read in place as int32: the model must be 4-byte aligned (tfa/engine.h)
    from tinyfleet.device.engine import _engine_library

    lib = _engine_library()
    model = shared_model(shared_models, "hello_world_int8")
    buf = ctypes.create_string_buffer(b"\0" + model, len(model) + 1)
    arena = ctypes.create_string_buffer(1 << 16)
    state = ctypes.create_string_buffer(lib.tfa_engine_struct_size())
    at = ctypes.addressof(buf)
    assert at % 4 == 0
    rc = lib.tfa_engine_init(state, ctypes.cast(at + 1, ctypes.c_char_p), len(model), arena, len(arena))
    assert -rc == ErrorCode.MODEL_INVALID
    ctypes.memmove(at, model, len(model))  # the same bytes, aligned: accepted
    assert lib.tfa_engine_init(state, ctypes.cast(at, ctypes.c_char_p), len(model), arena, len(arena)) == 0


def test_small_arena_reports_need(host_lib: None, shared_models: Path) -> None:
    model = shared_model(shared_models, "micro_speech_quantized")
    need = Engine(model).arena_used
    with pytest.raises(EngineError) as err:
        Engine(model, arena_size=need - 64)
    assert err.value.code == ErrorCode.ARENA_EXHAUSTED
    with pytest.raises(EngineError) as err:
        Engine(model, arena_size=64)
    assert err.value.code == ErrorCode.ARENA_EXHAUSTED
    assert Engine(model, arena_size=need + 15).arena_used <= need + 15


def test_malformed_models_refused(host_lib: None, shared_models: Path) -> None:
    model = shared_model(shared_models, "hello_world_int8")
    for cut in (0, 4, 8, 16, 100, len(model) // 2, len(model) - 1):
        with pytest.raises(EngineError) as err:
            Engine(model[:cut])
        assert err.value.code in (ErrorCode.MODEL_INVALID, ErrorCode.UNSUPPORTED_OP)
    rng = np.random.default_rng(3)
    refused = 0
    for _ in range(300):
        bad = bytearray(model)
        for pos in rng.integers(0, len(bad), size=4):
            bad[pos] = int(rng.integers(0, 256))
        try:
            engine = Engine(bytes(bad))
            engine.invoke()
        except EngineError as e:
            assert e.code in (ErrorCode.MODEL_INVALID, ErrorCode.UNSUPPORTED_OP, ErrorCode.ARENA_EXHAUSTED)
            refused += 1
    assert refused > 0
