"""The .tflite validator: real models parse, anything malformed is InvalidModelError."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tinyfleet.signing.errors import InvalidModelError
from tinyfleet.signing.tflite import builtin_op_name, estimate_arena_bytes, parse_model

MODEL = (REPO / "tests" / "vectors" / "model.tflite").read_bytes()


def test_project_model() -> None:
    info = parse_model(MODEL)
    assert info.schema_version == 3 and len(info.subgraphs) == 1
    assert info.operators == ("FULLY_CONNECTED", "SOFTMAX")
    assert [(t.dtype, t.shape) for t in info.inputs] == [("int8", (1, 8))]
    assert [(t.dtype, t.shape) for t in info.outputs] == [("int8", (1, 4))]
    arena = estimate_arena_bytes(MODEL)
    # input 8, hidden 16, logits 4, softmax 4: each int8 tensor padded to 16 bytes at least.
    assert arena % 16 == 0 and arena >= 16 + 16 + 16 + 16


@pytest.mark.parametrize(
    ("name", "ops", "input_spec", "arena"),
    [
        ("hello_world_int8.tflite", ("FULLY_CONNECTED",), ("int8", (1, 1)), 64),
        (
            "micro_speech_quantized.tflite",
            ("DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "RESHAPE", "SOFTMAX"),
            ("int8", (1, 1960)),
            None,
        ),
        ("person_detect.tflite", None, ("int8", (1, 96, 96, 1)), None),
        ("keyword_scrambled_8bit.tflite", None, ("int16", (1, 96)), None),
    ],
)
def test_shared_models(
    shared_models: Path,
    name: str,
    ops: tuple[str, ...] | None,
    input_spec: tuple[str, tuple[int, ...]],
    arena: int | None,
) -> None:
    info = parse_model((shared_models / name).read_bytes())
    if ops is not None:
        assert info.operators == ops
    first = info.inputs[0]
    assert (first.dtype, first.shape) == input_spec
    estimate = estimate_arena_bytes(info)
    size = 1
    for d in first.shape:
        size *= d
    assert estimate >= size * (2 if first.dtype == "int16" else 1)
    if arena is not None:
        assert estimate == arena


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"1234567", "too short"),
        (b"\x08\x00\x00\x00TFL2" + bytes(16), "not 'TFL3'"),
        (b"\xff\xff\xff\x7fTFL3" + bytes(16), "past the end"),
        (b"\x08\x00\x00\x00TFL3" + bytes(16), "vtable"),
    ],
)
def test_malformed_headers(data: bytes, message: str) -> None:
    with pytest.raises(InvalidModelError, match=message):
        parse_model(data)


def test_wrong_schema_version() -> None:
    # A real model with its version field patched: find the root table's version field.
    data = bytearray(MODEL)
    root = struct.unpack_from("<I", data, 0)[0]
    vtable = root - struct.unpack_from("<i", data, root)[0]
    field = struct.unpack_from("<H", data, vtable + 4)[0]
    struct.pack_into("<I", data, root + field, 4)
    with pytest.raises(InvalidModelError, match="schema version 4"):
        parse_model(bytes(data))


def test_every_truncation_of_a_real_model_is_refused_cleanly() -> None:
    # The model's last bytes belong to tables the validator reads, so no proper prefix is a model.
    for n in range(len(MODEL)):
        with pytest.raises(InvalidModelError):
            parse_model(MODEL[:n])


def test_op_names() -> None:
    assert builtin_op_name(9) == "FULLY_CONNECTED" and builtin_op_name(25) == "SOFTMAX"
    assert builtin_op_name(9999) == "BUILTIN_9999"
