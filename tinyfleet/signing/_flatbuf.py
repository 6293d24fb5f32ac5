"""A minimal, bounds-checked FlatBuffers reader (only what the .tflite validator needs).

Every read checks its bounds and raises InvalidModelError, so garbage can never escape as
IndexError or struct.error. Layout reference: the FlatBuffers binary format (root uoffset, tables with
an soffset to their vtable, vtables of u16 field offsets, vectors prefixed by a u32 length).
"""

from __future__ import annotations

import struct

from tinyfleet.signing.errors import InvalidModelError


class FlatBuffer:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def _need(self, off: int, size: int, what: str) -> None:
        if off < 0 or size < 0 or off + size > len(self.data):
            raise InvalidModelError(
                f"{what} at offset {off} runs past the end of the file ({len(self.data)} bytes)"
            )

    def u8(self, off: int, what: str = "byte") -> int:
        self._need(off, 1, what)
        return self.data[off]

    def u16(self, off: int, what: str = "u16") -> int:
        self._need(off, 2, what)
        return int(struct.unpack_from("<H", self.data, off)[0])

    def i32(self, off: int, what: str = "i32") -> int:
        self._need(off, 4, what)
        return int(struct.unpack_from("<i", self.data, off)[0])

    def u32(self, off: int, what: str = "u32") -> int:
        self._need(off, 4, what)
        return int(struct.unpack_from("<I", self.data, off)[0])

    def u64(self, off: int, what: str = "u64") -> int:
        self._need(off, 8, what)
        return int(struct.unpack_from("<Q", self.data, off)[0])

    def root(self) -> Table:
        return self.table(self.u32(0, "root table offset"), "root table")

    def table(self, pos: int, what: str) -> Table:
        return Table(self, pos, what)


class Table:
    """One flatbuffer table; field accessors take the field's index in the schema."""

    def __init__(self, fb: FlatBuffer, pos: int, what: str) -> None:
        self.fb = fb
        self.pos = pos
        self.what = what
        vtable = pos - fb.i32(pos, f"{what} vtable offset")
        vt_size = fb.u16(vtable, f"{what} vtable size")
        tbl_size = fb.u16(vtable + 2, f"{what} table size")
        if vt_size < 4 or vt_size % 2:
            raise InvalidModelError(f"{what}: malformed vtable (size {vt_size})")
        fb._need(vtable, vt_size, f"{what} vtable")
        if tbl_size < 4:
            raise InvalidModelError(f"{what}: malformed table (size {tbl_size})")
        fb._need(pos, tbl_size, what)
        self.vtable = vtable
        self.vt_size = vt_size
        self.tbl_size = tbl_size

    def _field(self, index: int, size: int) -> int | None:
        voff = 4 + 2 * index
        if voff + 2 > self.vt_size:
            return None
        off = self.fb.u16(self.vtable + voff)
        if off == 0:
            return None
        if off + size > self.tbl_size:
            raise InvalidModelError(f"{self.what}: field {index} lies outside its table")
        return self.pos + off

    def u8(self, index: int, default: int = 0) -> int:
        p = self._field(index, 1)
        return default if p is None else self.fb.u8(p)

    def i32(self, index: int, default: int = 0) -> int:
        p = self._field(index, 4)
        return default if p is None else self.fb.i32(p)

    def u32(self, index: int, default: int = 0) -> int:
        p = self._field(index, 4)
        return default if p is None else self.fb.u32(p)

    def u64(self, index: int, default: int = 0) -> int:
        p = self._field(index, 8)
        return default if p is None else self.fb.u64(p)

    def _target(self, index: int) -> int | None:
        p = self._field(index, 4)
        return None if p is None else p + self.fb.u32(p, f"{self.what} field {index} offset")

    def table(self, index: int, what: str) -> Table | None:
        t = self._target(index)
        return None if t is None else self.fb.table(t, what)

    def vector(self, index: int, elem_size: int, what: str) -> tuple[int, int] | None:
        """(first element offset, count) of a vector field, bounds-checked; None when absent."""
        t = self._target(index)
        if t is None:
            return None
        count = self.fb.u32(t, f"{what} length")
        self.fb._need(t + 4, count * elem_size, what)
        return t + 4, count

    def int_vector(self, index: int, what: str) -> list[int]:
        vec = self.vector(index, 4, what)
        if vec is None:
            return []
        start, count = vec
        return [self.fb.i32(start + 4 * i) for i in range(count)]

    def table_vector(self, index: int, what: str) -> list[Table]:
        vec = self.vector(index, 4, what)
        if vec is None:
            return []
        start, count = vec
        out = []
        for i in range(count):
            slot = start + 4 * i
            out.append(self.fb.table(slot + self.fb.u32(slot), f"{what}[{i}]"))
        return out

    def string(self, index: int, what: str) -> str | None:
        vec = self.vector(index, 1, what)
        if vec is None:
            return None
        start, count = vec
        return self.fb.data[start : start + count].decode("utf-8", errors="replace")
