"""The ctypes mirrors of C structs (tinyfleet/device/library.py) against the compiler's own layout,
reported by the host library (tfa_host_struct_layout, ports/host/host_layout.h)."""

from __future__ import annotations

import ctypes

import pytest

from tinyfleet.device.library import CTensorInfo, EngineHead, HostConfig, declare, load_library


def c_layout(which: int) -> list[int]:
    lib = load_library()
    u32 = ctypes.c_uint32
    declare(lib, {"tfa_host_struct_layout": ([u32, ctypes.POINTER(u32), u32], u32)})
    out = (u32 * 64)()
    n = int(lib.tfa_host_struct_layout(which, out, len(out)))
    assert 0 < n <= len(out)
    return list(out[:n])


def py_layout(struct: type[ctypes.Structure]) -> list[int]:
    return [ctypes.sizeof(struct)] + [getattr(struct, name).offset for name, *_ in struct._fields_]


@pytest.mark.parametrize("which, struct", [(0, CTensorInfo), (2, HostConfig)])
def test_mirror_matches_c(which: int, struct: type[ctypes.Structure]) -> None:
    assert py_layout(struct) == c_layout(which)


def test_engine_head_is_a_prefix_of_tfa_engine_t() -> None:
    size, *offsets = c_layout(1)
    ours = py_layout(EngineHead)
    assert ours[1:] == offsets and ours[0] <= size
    lib = load_library()
    declare(lib, {"tfa_engine_struct_size": ([], ctypes.c_uint32)})
    assert lib.tfa_engine_struct_size() == size


def test_tensor_info_helper_and_unknown_id() -> None:
    lib = load_library()
    u32 = ctypes.c_uint32
    declare(lib, {"tfa_host_tensor_info_layout": ([ctypes.POINTER(u32), u32], u32)})
    out = (u32 * 16)()
    n = int(lib.tfa_host_tensor_info_layout(out, len(out)))
    assert list(out[:n]) == py_layout(CTensorInfo)
    assert c_layout(0) == list(out[:n])
    declare(lib, {"tfa_host_struct_layout": ([u32, ctypes.POINTER(u32), u32], u32)})
    assert lib.tfa_host_struct_layout(99, None, 0) == 0
