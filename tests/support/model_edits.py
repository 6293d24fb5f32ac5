"""Small .tflite edits for tests: a real model turned into one the device engine refuses."""

from __future__ import annotations

import struct

from tinyfleet.signing._flatbuf import FlatBuffer

SVDF = 27  # put in place of a FULLY_CONNECTED, refused: its tensors are not SVDF's five
LSTM = 44  # UNIDIRECTIONAL_SEQUENCE_LSTM: a builtin the engine lacks


def with_operator(model: bytes, index: int, builtin: int) -> bytes:
    """`model` with its operator code `index` changed to `builtin` (both code fields, old and new)."""
    out = bytearray(model)
    code = FlatBuffer(bytes(model)).root().table_vector(1, "operator codes")[index]
    deprecated, current = code._field(0, 1), code._field(3, 4)
    if deprecated is None or current is None:
        raise ValueError("this model's operator code does not store both fields")
    out[deprecated] = builtin if builtin < 127 else 127
    struct.pack_into("<i", out, current, builtin)
    return bytes(out)
