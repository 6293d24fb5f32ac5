"""The manifest self-test (docs/PROTOCOL.md section 1.2): its input stream and its expected digest.

The one Python implementation, used by offline signing, the server's upload check, the demo and tests.
Every input tensor of subgraph 0 is filled, in the subgraph's input order, from ONE continuing xorshift32
stream started at `selftest_seed`, exactly as the C engine does (agent_firmware/core/engine/selftest.c);
the digest is SHA-256 of the raw bytes of output tensor 0 after one inference. The expected digest comes
from TensorFlow Lite Micro's own Python interpreter (`tflite_micro`, the `ml` extra), so that the C engine
is held to the reference rather than to itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from typing import Any

from tinyfleet.signing.errors import InvalidModelError, SigningError
from tinyfleet.signing.tflite import parse_model

_MASK = 0xFFFFFFFF


class SelftestUnavailable(SigningError):
    """The reference interpreter is not installed or cannot run this model."""


def _check_seed(seed: int) -> None:
    if not 1 <= seed <= _MASK:
        raise ValueError("selftest seed must be in 1..2^32-1")


def selftest_input(seed: int, length: int) -> bytes:
    """The first `length` bytes of the stream: xorshift32 (13, 17, 5) from `seed`, byte s & 0xFF per step."""
    _check_seed(seed)
    s = seed
    out = bytearray(length)
    for i in range(length):
        s ^= (s << 13) & _MASK
        s ^= s >> 17
        s ^= (s << 5) & _MASK
        out[i] = s & 0xFF
    return bytes(out)


def selftest_inputs(seed: int, sizes: Sequence[int]) -> list[bytes]:
    """The bytes of each input tensor, in order, cut from one continuing stream (sizes in bytes)."""
    stream = selftest_input(seed, sum(sizes))
    out, at = [], 0
    for size in sizes:
        out.append(stream[at : at + size])
        at += size
    return out


def input_sizes(model: bytes) -> list[int]:
    """Bytes of each input tensor of subgraph 0, in the subgraph's input order."""
    sizes = []
    for tensor in parse_model(model).inputs:
        size = tensor.element_size
        if size is None or any(d < 0 for d in tensor.shape):
            raise InvalidModelError(f"input tensor {tensor.dtype}{list(tensor.shape)} has no fixed size")
        for dim in tensor.shape:
            size *= dim
        sizes.append(size)
    return sizes


def reference_available() -> bool:
    """Whether the reference interpreter (pip package tflite-micro) is installed."""
    try:
        return importlib.util.find_spec("tflite_micro") is not None
    except ValueError:
        return False


def expected_output_sha256(model: bytes, seed: int) -> bytes:
    """SHA-256 of output tensor 0 after one inference on the self-test inputs of `seed`."""
    _check_seed(seed)
    model = bytes(model)
    data = selftest_inputs(seed, input_sizes(model))
    try:
        import numpy as np
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise SelftestUnavailable(
            "the reference interpreter (pip package tflite-micro) is not installed"
        ) from None
    try:
        interpreter: Any = runtime.Interpreter.from_bytes(model)
        for index, raw in enumerate(data):
            detail = interpreter.get_input_details(index)
            dtype = np.dtype(detail["dtype"])
            shape = tuple(int(d) for d in detail["shape"])
            interpreter.set_input(np.frombuffer(raw, dtype=dtype).reshape(shape), index)
        interpreter.invoke()
        output = np.ascontiguousarray(interpreter.get_output(0))
    except Exception as exc:  # the interpreter reports model problems as assorted runtime errors
        raise SelftestUnavailable(f"reference interpreter failed: {' '.join(str(exc).split())}") from None
    return hashlib.sha256(output.tobytes()).digest()
