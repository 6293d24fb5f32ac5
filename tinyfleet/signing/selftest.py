"""Expected self-test output (docs/PROTOCOL.md section 1.2), computed with the reference interpreter.

The device feeds its model the xorshift32 bytes of `selftest_seed` and compares the SHA-256 of the first
output tensor with the manifest. The expected digest is computed here with TensorFlow Lite Micro's own
Python interpreter (`tflite_micro`, the `ml` extra), so that the C engine is held to the reference.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tinyfleet.signing.errors import InvalidModelError, SigningError
from tinyfleet.signing.package import selftest_input
from tinyfleet.signing.tflite import TENSOR_TYPES, parse_model


class SelftestUnavailable(SigningError):
    """The reference interpreter is not installed or cannot run this model."""


def input_size(model: bytes) -> int:
    """Bytes of the model's first input tensor."""
    tensor = parse_model(model).inputs[0]
    size = next((s for name, s in TENSOR_TYPES.values() if name == tensor.dtype), None)
    if size is None or any(d < 0 for d in tensor.shape):
        raise InvalidModelError(f"input tensor {tensor.dtype}{list(tensor.shape)} has no fixed size")
    for dim in tensor.shape:
        size *= dim
    return size


def expected_output_sha256(model: bytes, seed: int) -> bytes:
    """SHA-256 of the first output tensor after one inference on the self-test input of `seed`."""
    try:
        import numpy as np
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise SelftestUnavailable(
            "the reference interpreter (pip package tflite-micro) is not installed"
        ) from None
    data = selftest_input(seed, input_size(model))
    try:
        interpreter: Any = runtime.Interpreter.from_bytes(model)
        detail = interpreter.get_input_details(0)
        dtype = np.dtype(detail["dtype"])
        shape = tuple(int(d) for d in detail["shape"])
        interpreter.set_input(np.frombuffer(data, dtype=dtype).reshape(shape), 0)
        interpreter.invoke()
        output = np.ascontiguousarray(interpreter.get_output(0))
    except Exception as exc:  # the interpreter reports model problems as assorted runtime errors
        raise SelftestUnavailable(f"reference interpreter failed: {' '.join(str(exc).split())}") from None
    return hashlib.sha256(output.tobytes()).digest()
