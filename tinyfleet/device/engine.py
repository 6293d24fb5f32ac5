"""Thin ctypes wrapper of the C inference engine (agent_firmware/core/engine) for tests and benchmarks,
plus the manifest self-test computation (docs/PROTOCOL.md 1.2) that packaging uses.

The engine itself lives in the host library ``agent_firmware/build/host/libtinyfleet_agent.so``
(built by ``make -C agent_firmware host``). Device agents do not use this module.
"""

from __future__ import annotations

import ctypes
import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LIB = REPO_ROOT / "agent_firmware" / "build" / "host" / "libtinyfleet_agent.so"

MAX_DIMS = 6
ERR_MODEL_INVALID = 128
ERR_UNSUPPORTED_OP = 129
ERR_ARENA_EXHAUSTED = 130
_ERR_NAMES = {
    ERR_MODEL_INVALID: "MODEL_INVALID",
    ERR_UNSUPPORTED_OP: "UNSUPPORTED_OP",
    ERR_ARENA_EXHAUSTED: "ARENA_EXHAUSTED",
    39: "BAD_STATE",
}
_DTYPES: dict[int, type[np.generic]] = {
    0: np.float32,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    7: np.int16,
    9: np.int8,
}


class EngineError(Exception):
    """The engine refused the model or a call; code is the positive tfa_err_t value."""

    def __init__(self, code: int, message: str, op_code: int = -1, op_name: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.op_code = op_code
        self.op_name = op_name


class _TensorInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint8),
        ("rank", ctypes.c_uint8),
        ("dims", ctypes.c_int32 * MAX_DIMS),
        ("bytes", ctypes.c_uint32),
        ("scale", ctypes.c_float),
        ("zero_point", ctypes.c_int32),
    ]


# Offsets of the public fields of tfa_engine_t (engine.h), on an LP64 host.
class _EngineHead(ctypes.Structure):
    _fields_ = [
        ("model", ctypes.c_void_p),
        ("model_len", ctypes.c_uint32),
        ("arena", ctypes.c_void_p),
        ("arena_size", ctypes.c_uint32),
        ("arena_used", ctypes.c_uint32),
        ("arena_needed", ctypes.c_uint32),
        ("activation_bytes", ctypes.c_uint32),
        ("op_count", ctypes.c_uint32),
        ("mac_count", ctypes.c_uint64),
        ("bad_op_code", ctypes.c_int32),
        ("bad_op_index", ctypes.c_int32),
        ("tensor_count", ctypes.c_uint32),
        ("input_count", ctypes.c_uint32),
        ("output_count", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class TensorInfo:
    dtype: type[np.generic]
    shape: tuple[int, ...]
    nbytes: int
    scale: float
    zero_point: int


_lib_cache: dict[str, ctypes.CDLL] = {}


def load_library(path: Path | None = None) -> ctypes.CDLL:
    """Load the host library (cached); raises FileNotFoundError with the build command if absent."""
    lib_path = Path(path) if path else DEFAULT_LIB
    key = str(lib_path)
    if key in _lib_cache:
        return _lib_cache[key]
    if not lib_path.exists():
        raise FileNotFoundError(f"{lib_path} not built: run `make -C agent_firmware host`")
    lib = ctypes.CDLL(str(lib_path))
    vp, u32, i32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    lib.tfa_engine_init.argtypes = [vp, ctypes.c_char_p, u32, vp, u32]
    lib.tfa_engine_init.restype = i32
    lib.tfa_engine_invoke.argtypes = [vp]
    lib.tfa_engine_invoke.restype = i32
    for name in ("tfa_engine_input", "tfa_engine_output"):
        fn = getattr(lib, name)
        fn.argtypes = [vp, u32, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(u32)]
        fn.restype = i32
    for name in ("tfa_engine_input_info", "tfa_engine_output_info"):
        fn = getattr(lib, name)
        fn.argtypes = [vp, u32, ctypes.POINTER(_TensorInfo)]
        fn.restype = i32
    lib.tfa_engine_op_name.argtypes = [ctypes.c_int32]
    lib.tfa_engine_op_name.restype = ctypes.c_char_p
    lib.tfa_engine_op_code.argtypes = [vp, u32]
    lib.tfa_engine_op_code.restype = ctypes.c_int32
    lib.tfa_engine_struct_size.argtypes = []
    lib.tfa_engine_struct_size.restype = u32
    lib.tfa_engine_selftest_digest.argtypes = [vp, u32, ctypes.c_char_p]
    lib.tfa_engine_selftest_digest.restype = i32
    _lib_cache[key] = lib
    return lib


def op_name(code: int, lib: ctypes.CDLL | None = None) -> str:
    name: bytes = (lib or load_library()).tfa_engine_op_name(code)
    return name.decode()


class Engine:
    """One engine instance over a model held in Python memory, with its own arena."""

    def __init__(self, model: bytes, arena_size: int = 1 << 20, lib: ctypes.CDLL | None = None) -> None:
        self._lib = lib or load_library()
        self._model = ctypes.create_string_buffer(bytes(model), len(model))
        self._arena = ctypes.create_string_buffer(arena_size)
        self._state = ctypes.create_string_buffer(self._lib.tfa_engine_struct_size())
        rc = self._lib.tfa_engine_init(self._state, self._model, len(model), self._arena, arena_size)
        head = _EngineHead.from_buffer(self._state)
        if rc != 0:
            code = -rc
            name = _ERR_NAMES.get(code, str(code))
            if code == ERR_UNSUPPORTED_OP and head.bad_op_code >= 0:
                opn = op_name(head.bad_op_code, self._lib)
                raise EngineError(
                    code,
                    f"UNSUPPORTED_OP: {opn} (builtin {head.bad_op_code}, operator #{head.bad_op_index})",
                    head.bad_op_code,
                    opn,
                )
            detail = f" (needs {head.arena_needed} bytes)" if head.arena_needed else ""
            raise EngineError(code, f"{name}{detail}")
        self.arena_used: int = head.arena_used
        self.activation_bytes: int = head.activation_bytes
        self.op_count: int = head.op_count
        self.mac_count: int = head.mac_count
        self.input_count: int = head.input_count
        self.output_count: int = head.output_count

    def op_codes(self) -> list[int]:
        """Builtin operator codes in execution order."""
        return [int(self._lib.tfa_engine_op_code(self._state, i)) for i in range(self.op_count)]

    def op_names(self) -> list[str]:
        return [op_name(code, self._lib) for code in self.op_codes()]

    def _info(self, fn_name: str, idx: int) -> TensorInfo:
        info = _TensorInfo()
        rc = getattr(self._lib, fn_name)(self._state, idx, ctypes.byref(info))
        if rc != 0:
            raise EngineError(-rc, f"no tensor {idx}")
        dtype = _DTYPES.get(info.type, np.uint8)
        shape = tuple(int(info.dims[i]) for i in range(info.rank))
        return TensorInfo(dtype, shape, int(info.bytes), float(info.scale), int(info.zero_point))

    def input_info(self, idx: int = 0) -> TensorInfo:
        return self._info("tfa_engine_input_info", idx)

    def output_info(self, idx: int = 0) -> TensorInfo:
        return self._info("tfa_engine_output_info", idx)

    def _buffer(self, fn_name: str, idx: int) -> tuple[int, int]:
        ptr = ctypes.c_void_p()
        size = ctypes.c_uint32()
        rc = getattr(self._lib, fn_name)(self._state, idx, ctypes.byref(ptr), ctypes.byref(size))
        if rc != 0 or ptr.value is None:
            raise EngineError(-rc, f"no tensor {idx}")
        return ptr.value, size.value

    def set_input(self, idx: int, data: np.ndarray) -> None:
        info = self.input_info(idx)
        raw = np.ascontiguousarray(data, dtype=info.dtype).tobytes()
        if len(raw) != info.nbytes:
            raise ValueError(f"input {idx} needs {info.nbytes} bytes, got {len(raw)}")
        ptr, _ = self._buffer("tfa_engine_input", idx)
        ctypes.memmove(ptr, raw, len(raw))

    def invoke(self) -> None:
        rc = self._lib.tfa_engine_invoke(self._state)
        if rc != 0:
            raise EngineError(-rc, "invoke failed")

    def output_bytes(self, idx: int = 0) -> bytes:
        ptr, size = self._buffer("tfa_engine_output", idx)
        return ctypes.string_at(ptr, size)

    def get_output(self, idx: int = 0) -> np.ndarray:
        info = self.output_info(idx)
        return np.frombuffer(self.output_bytes(idx), dtype=info.dtype).reshape(info.shape).copy()

    def selftest_digest(self, seed: int) -> bytes:
        out = ctypes.create_string_buffer(32)
        rc = self._lib.tfa_engine_selftest_digest(self._state, seed, out)
        if rc != 0:
            raise EngineError(-rc, "self-test failed")
        return out.raw


def selftest_input(seed: int, nbytes: int, state: int | None = None) -> tuple[bytes, int]:
    """xorshift32 byte stream of docs/PROTOCOL.md 1.2; returns the bytes and the state to continue from."""
    s = (seed if state is None else state) & 0xFFFFFFFF
    out = bytearray(nbytes)
    for i in range(nbytes):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        out[i] = s & 0xFF
    return bytes(out), s


def _input_count(model: bytes) -> int:
    """Number of inputs of subgraph 0, read from the flatbuffer (Model.subgraphs[0].inputs)."""

    def u32(at: int) -> int:
        return int(struct.unpack_from("<I", model, at)[0])

    def field(table: int, field_id: int) -> int:
        vtable = table - struct.unpack_from("<i", model, table)[0]
        if 4 + 2 * field_id >= struct.unpack_from("<H", model, vtable)[0]:
            return 0
        off = struct.unpack_from("<H", model, vtable + 4 + 2 * field_id)[0]
        return table + off if off else 0

    try:
        root = u32(0)
        subgraphs_at = field(root, 2)
        subgraphs = subgraphs_at + u32(subgraphs_at)
        sg_at = subgraphs + 4
        sg = sg_at + u32(sg_at)
        inputs_at = field(sg, 1)
        return u32(inputs_at + u32(inputs_at)) if inputs_at else 0
    except struct.error as exc:
        raise ValueError("not a TFLite flatbuffer") from exc


def selftest_output_sha256(model: bytes, seed: int) -> bytes:
    """Expected manifest selftest_output_sha256 for model and seed, computed with the TFLM reference
    interpreter (independent of the C engine, which is bit-exact with it). Inputs are filled in order
    from one continuing xorshift32 stream. Needs the ``tflite_micro`` package (extra ``ml``)."""
    if not 0 < seed <= 0xFFFFFFFF:
        raise ValueError("selftest seed must be in 1..2^32-1")
    from tflite_micro.python.tflite_micro import runtime  # heavy import, only when needed

    interp = runtime.Interpreter.from_bytes(bytes(model))
    state = seed
    for idx in range(_input_count(bytes(model))):
        details = interp.get_input_details(idx)
        dtype = np.dtype(details["dtype"])
        shape = tuple(int(d) for d in details["shape"])
        count = int(np.prod(shape)) if shape else 1
        raw, state = selftest_input(seed, count * dtype.itemsize, state)
        interp.set_input(np.frombuffer(raw, dtype=dtype).reshape(shape), idx)
    interp.invoke()
    out = np.ascontiguousarray(interp.get_output(0))
    return hashlib.sha256(out.tobytes()).digest()
