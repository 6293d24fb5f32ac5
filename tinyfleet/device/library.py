"""The one loader of the host library and the one ctypes mirror of the C structs Python shares with it.

The library is `<repo>/agent_firmware/build/host/libtinyfleet_agent.so`, or `$TINYFLEET_AGENT_LIB`
when set (used as is, never built). The repository's library is built with `make -C agent_firmware host`
when missing or older than its sources, and loaded once per process. Every failure is a `LibraryError`.

Modules of tinyfleet/device declare the argtypes of the functions they call (`declare`); nothing outside
tinyfleet/device touches the library. The struct mirrors are checked against the compiler's layout by
tests/device/test_struct_layout.py (`tfa_host_struct_layout`, ports/host/host_layout.h).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import subprocess
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO_ROOT / "agent_firmware"
LIBRARY_PATH = FIRMWARE_DIR / "build" / "host" / "libtinyfleet_agent.so"
MAX_DIMS = 6  # TFA_ENGINE_MAX_DIMS
_SOURCES = ("core/src", "core/engine", "core/include/tfa", "ports/host")


class LibraryError(RuntimeError):
    """The host library could not be built or loaded (one-line message)."""


class CTensorInfo(ctypes.Structure):
    """tfa_tensor_info_t (tfa/engine.h)."""

    _fields_ = [
        ("type", ctypes.c_uint8),
        ("rank", ctypes.c_uint8),
        ("dims", ctypes.c_int32 * MAX_DIMS),
        ("bytes", ctypes.c_uint32),
        ("scale", ctypes.c_float),
        ("zero_point", ctypes.c_int32),
    ]


class EngineHead(ctypes.Structure):
    """The public leading fields of tfa_engine_t (tfa/engine.h); the C struct is longer."""

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


class HostConfig(ctypes.Structure):
    """tfa_host_config_t (ports/host/host_device.h)."""

    _fields_ = [
        ("hardware_class", ctypes.c_uint32),
        ("runtime_version", ctypes.c_uint32),
        ("ram_budget", ctypes.c_uint32),
        ("slot_size", ctypes.c_uint32),
        ("sector_size", ctypes.c_uint32),
        ("max_trial_boots", ctypes.c_uint32),
        ("keys", ctypes.c_char_p),
        ("key_count", ctypes.c_uint32),
        ("cpu_hz", ctypes.c_uint32),
        ("milli_cycles_per_mac", ctypes.c_uint32),
        ("cycles_per_op", ctypes.c_uint32),
        ("encryption_key", ctypes.c_char_p),
        ("require_encryption", ctypes.c_uint32),
    ]


Signatures = dict[str, tuple[list[type], type | None]]

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def _stale(lib: Path) -> bool:
    built = lib.stat().st_mtime
    sources = [FIRMWARE_DIR / "Makefile"]
    for folder in _SOURCES:
        sources += (FIRMWARE_DIR / folder).glob("*.[ch]")
    return any(path.stat().st_mtime > built for path in sources)


def _build() -> None:
    LIBRARY_PATH.parent.mkdir(parents=True, exist_ok=True)
    with (LIBRARY_PATH.parent / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one make at a time across processes (pytest-xdist workers)
        try:
            result = subprocess.run(
                ["make", "-s", "-C", str(FIRMWARE_DIR), "host"], capture_output=True, text=True, check=False
            )
        except OSError as exc:
            raise LibraryError(f"cannot run make to build {LIBRARY_PATH}: {exc}") from None
    if result.returncode != 0 or not LIBRARY_PATH.is_file():
        lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        first_error = next((line for line in lines if "error" in line), lines[-1] if lines else "")
        raise LibraryError(f"`make -C agent_firmware host` failed: {first_error or result.returncode}")


def load_library() -> ctypes.CDLL:
    """The host library, built first if needed; loaded once per process."""
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        override = os.environ.get("TINYFLEET_AGENT_LIB")
        path = Path(override) if override else LIBRARY_PATH
        if not override and (not path.is_file() or _stale(path)):
            _build()
        try:
            _lib = ctypes.CDLL(str(path))
        except OSError as exc:
            raise LibraryError(f"cannot load {path}: {' '.join(str(exc).split())}") from None
        return _lib


def declare(lib: ctypes.CDLL, signatures: Signatures) -> None:
    """Set argtypes and restype of the named functions (idempotent; callers must agree on them)."""
    for name, (argtypes, restype) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype
