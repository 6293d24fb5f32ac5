"""Thin ctypes wrapper of the C inference engine (agent_firmware/core/engine) for tests, benchmarks and
the server's upload check. The engine lives in the host library (`tinyfleet.device.library`). The
self-test's expected digest is computed by `tinyfleet.signing.selftest`, not here; `Engine.selftest_digest`
is the C engine's own computation of it. Device agents do not use this module.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import numpy as np

from tinyfleet.device.library import CTensorInfo, EngineHead, declare, load_library
from tinyfleet.signing.codes import ErrorCode, error_name
from tinyfleet.signing.tflite import builtin_op_name

_DTYPES: dict[int, type[np.generic]] = {
    0: np.float32,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    7: np.int16,
    9: np.int8,
}


class EngineError(Exception):
    """The engine refused the model or a call; code is the positive tfa_err_t value (an ErrorCode)."""

    def __init__(self, code: int, message: str, op_code: int = -1, op_name: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.op_code = op_code
        self.op_name = op_name


@dataclass(frozen=True)
class TensorInfo:
    dtype: type[np.generic]
    shape: tuple[int, ...]
    nbytes: int
    scale: float
    zero_point: int


@functools.cache
def _engine_library() -> ctypes.CDLL:
    lib = load_library()
    vp, u32, i32 = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    buffer: tuple[list[type], type] = ([vp, u32, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(u32)], i32)
    info: tuple[list[type], type] = ([vp, u32, ctypes.POINTER(CTensorInfo)], i32)
    declare(
        lib,
        {
            "tfa_engine_init": ([vp, ctypes.c_char_p, u32, vp, u32], i32),
            "tfa_engine_init_kernels": ([vp, ctypes.c_char_p, u32, vp, u32, i32], i32),
            "tfa_engine_invoke": ([vp], i32),
            "tfa_engine_reset": ([vp], i32),
            "tfa_engine_input": buffer,
            "tfa_engine_output": buffer,
            "tfa_engine_input_info": info,
            "tfa_engine_output_info": info,
            "tfa_engine_op_name": ([ctypes.c_int32], ctypes.c_char_p),
            "tfa_engine_supported_op": ([u32], ctypes.c_int32),
            "tfa_engine_op_code": ([vp, u32], ctypes.c_int32),
            "tfa_engine_struct_size": ([], u32),
            "tfa_engine_selftest_digest": ([vp, u32, ctypes.c_char_p], i32),
        },
    )
    return lib


def op_name(code: int) -> str:
    """The TFLite schema's name of a builtin code; the C engine names only the ops it runs."""
    return builtin_op_name(code)


def supported_ops() -> list[tuple[int, str]]:
    """(builtin code, name) of every op the C engine runs, read from its table (core/engine/ops.h)."""
    lib = _engine_library()
    rows: list[tuple[int, str]] = []
    while (code := int(lib.tfa_engine_supported_op(len(rows)))) >= 0:
        name: bytes = lib.tfa_engine_op_name(code)
        rows.append((code, name.decode()))
    return rows


# Kernel sets of tfa_engine_init_kernels (TFA_ENGINE_KERNELS_x, tfa/engine.h).
KERNELS = {"reference": 0, "dsp": 1, "host": 2}


class Engine:
    """One engine instance over a model held in Python memory, with its own arena."""

    def __init__(
        self, model: bytes, arena_size: int = 1 << 20, optimized: bool = False, kernels: str | None = None
    ) -> None:
        """`kernels`: "reference" (the portable reference kernels, the oracle), "dsp" (the Cortex-M4
        DSP kernels, their instructions emulated in portable C), "host" (the host kernels, vectorised
        by the compiler), or None: the host library's tfa_engine_init choice, the host kernels (what
        simulated devices run). `optimized=True` is kernels="dsp". All give the same bytes."""
        if kernels is None and optimized:
            kernels = "dsp"
        if kernels is not None and kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, not {kernels!r}")
        self._lib = _engine_library()
        self._model = ctypes.create_string_buffer(bytes(model), len(model))
        self._arena = ctypes.create_string_buffer(arena_size)
        self._state = ctypes.create_string_buffer(self._lib.tfa_engine_struct_size())
        if kernels is None:
            rc = self._lib.tfa_engine_init(self._state, self._model, len(model), self._arena, arena_size)
        else:
            rc = self._lib.tfa_engine_init_kernels(
                self._state, self._model, len(model), self._arena, arena_size, KERNELS[kernels]
            )
        head = EngineHead.from_buffer(self._state)
        if rc != 0:
            code = -rc
            name = error_name(code)
            if code == ErrorCode.UNSUPPORTED_OP and head.bad_op_code >= 0:
                opn = op_name(head.bad_op_code)
                raise EngineError(
                    code,
                    f"UNSUPPORTED_OP: {opn} (builtin {head.bad_op_code}, operator #{head.bad_op_index})",
                    head.bad_op_code,
                    opn,
                )
            detail = f" (needs {head.arena_needed} bytes)" if head.arena_needed else ""
            raise EngineError(code, f"{name}{detail}")
        # bound once, with the state's address as a ready c_void_p: converting the buffer on every call
        # cost as much as a tiny model's whole inference
        self._invoke = self._lib.tfa_engine_invoke
        self._state_ptr = ctypes.c_void_p(ctypes.addressof(self._state))
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
        return [op_name(code) for code in self.op_codes()]

    def _info(self, fn_name: str, idx: int) -> TensorInfo:
        info = CTensorInfo()
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
        rc = self._invoke(self._state_ptr)
        if rc != 0:
            raise EngineError(-rc, "invoke failed")

    def reset(self) -> None:
        """Clear the model's state (SVDF's variable tensors, carried from one invoke to the next)."""
        rc = self._lib.tfa_engine_reset(self._state)
        if rc != 0:
            raise EngineError(-rc, "reset failed")

    def output_bytes(self, idx: int = 0) -> bytes:
        ptr, size = self._buffer("tfa_engine_output", idx)
        return ctypes.string_at(ptr, size)

    def get_output(self, idx: int = 0) -> np.ndarray:
        info = self.output_info(idx)
        return np.frombuffer(self.output_bytes(idx), dtype=info.dtype).reshape(info.shape).copy()

    def selftest_digest(self, seed: int) -> bytes:
        """The C engine's self-test digest (docs/PROTOCOL.md 1.2) on the current model."""
        out = ctypes.create_string_buffer(32)
        rc = self._lib.tfa_engine_selftest_digest(self._state, seed, out)
        if rc != 0:
            raise EngineError(-rc, "self-test failed")
        return out.raw
