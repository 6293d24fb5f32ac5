"""ctypes binding to one simulated device of the host library (`agent_firmware/ports/host/host_device.h`).

`DeviceRuntime` owns one C device: a RAM flash, the real C runtime and its UART link. It exposes only
what a board exposes: power (boot, power cycle, an injected power cut), the UART byte stream, and for
tests the flash image. Requests go through `send_frame`, which frames them with `tinyfleet.device.frames`;
nothing here re-implements verification or slot logic, every decision is the C runtime's.

The library is found, built when stale and loaded by `tinyfleet.device.library`.
"""

from __future__ import annotations

import ctypes
import functools
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from types import TracebackType

from tinyfleet.device import frames
from tinyfleet.device.library import MAX_DIMS, CTensorInfo, HostConfig, declare, load_library

RUNTIME_VERSION = (0 << 16) | (1 << 8) | 0  # TFA_RUNTIME_VERSION, 0.1.0
KEY_RECORD = 40  # key_id[8] || public_key[32]
MAX_KEYS = 16
_READ_CHUNK = 4096


class CutMode(IntEnum):
    """What the flash operation during which the power goes does (tfa_cut_mode_t in flash_host.h)."""

    NOTHING = 0
    HALF = 1
    GARBAGE = 2
    COMPLETE = 3


class NoResponse(frames.ProtocolError):
    """A request got no response: the device is off (power cut) or the response never came."""


TYPE_INT8 = 9  # TFA_TYPE_INT8


@dataclass(frozen=True)
class TensorSpec:
    """A model tensor's type (TFLite numbering), shape, size and quantization."""

    type: int
    shape: tuple[int, ...]
    nbytes: int
    scale: float
    zero_point: int

    @classmethod
    def of(cls, info: CTensorInfo) -> TensorSpec:
        shape = tuple(int(info.dims[i]) for i in range(min(int(info.rank), MAX_DIMS)))
        return cls(int(info.type), shape, int(info.bytes), float(info.scale), int(info.zero_point))


@functools.cache
def _device_library() -> ctypes.CDLL:
    lib = load_library()
    handle = ctypes.c_void_p
    u32 = ctypes.c_uint32
    info = ctypes.POINTER(CTensorInfo)
    declare(
        lib,
        {
            "tfa_host_create": ([ctypes.POINTER(HostConfig), ctypes.POINTER(handle)], ctypes.c_int),
            "tfa_host_destroy": ([handle], None),
            "tfa_host_boot": ([handle], ctypes.c_int),
            "tfa_host_power_cycle": ([handle], ctypes.c_int),
            "tfa_host_is_on": ([handle], ctypes.c_int),
            "tfa_host_uart_write": ([handle, ctypes.c_char_p, u32, ctypes.POINTER(u32)], ctypes.c_int),
            "tfa_host_uart_read": ([handle, ctypes.c_char_p, u32], u32),
            "tfa_host_arm_power_cut": ([handle, u32, u32, u32], None),
            "tfa_host_flash_ops": ([handle], u32),
            "tfa_host_flash_size": ([handle], u32),
            "tfa_host_flash_read": ([handle, ctypes.c_char_p, u32], ctypes.c_int),
            "tfa_host_flash_load": ([handle, ctypes.c_char_p, u32], ctypes.c_int),
            "tfa_host_memory_bytes": ([handle], u32),
            "tfa_host_model_io": ([handle, info, info], ctypes.c_int),
        },
    )
    return lib


def _check(rc: int, what: str) -> None:
    if rc != 0:
        code = -rc
        raise ValueError(f"{what}: {frames.error_name(code)} ({code})")


class DeviceRuntime:
    """One simulated device driving the real C runtime, reached only through UART frames.

    Release it with `close()` or a `with` block; a handle that was never closed is freed when the
    object is collected. Not thread-safe: one device belongs to one thread (or asyncio loop).
    """

    def __init__(
        self,
        *,
        hardware_class: int,
        ram_budget: int,
        slot_size: int,
        sector_size: int = 4096,
        trusted_keys: Iterable[tuple[bytes, bytes]] = (),
        runtime_version: int = RUNTIME_VERSION,
        max_trial_boots: int = 1,
        cpu_hz: int = 0,
        milli_cycles_per_mac: int = 0,
        cycles_per_op: int = 0,
        encryption_key: bytes | None = None,
        require_encryption: bool = False,
        boot: bool = True,
    ) -> None:
        keys = list(trusted_keys)
        if len(keys) > MAX_KEYS:
            raise ValueError(f"at most {MAX_KEYS} trusted keys")
        records = b""
        for key_id, public_key in keys:
            if len(key_id) != 8 or len(public_key) != 32:
                raise ValueError("a trusted key is an 8-byte key id and a 32-byte public key")
            records += bytes(key_id) + bytes(public_key)
        for name, value in (
            ("hardware_class", hardware_class), ("ram_budget", ram_budget), ("slot_size", slot_size),
            ("sector_size", sector_size), ("runtime_version", runtime_version),
            ("max_trial_boots", max_trial_boots), ("cpu_hz", cpu_hz),
            ("milli_cycles_per_mac", milli_cycles_per_mac), ("cycles_per_op", cycles_per_op),
        ):  # fmt: skip
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{name} {value} is not a u32")
        if encryption_key is not None and len(encryption_key) != 32:
            raise ValueError("the device encryption key is a 32-byte X25519 private key")
        self._lib = _device_library()
        config = HostConfig(
            hardware_class, runtime_version, ram_budget, slot_size, sector_size, max_trial_boots,
            records or None, len(keys), cpu_hz, milli_cycles_per_mac, cycles_per_op,
            bytes(encryption_key) if encryption_key is not None else None, int(require_encryption),
        )  # fmt: skip
        handle = ctypes.c_void_p()
        _check(self._lib.tfa_host_create(ctypes.byref(config), ctypes.byref(handle)), "device config")
        self._handle: int | None = handle.value
        self._finalizer = weakref.finalize(self, self._lib.tfa_host_destroy, handle.value)
        self._decoder = frames.FrameDecoder()
        self._rx = bytearray()
        self._read_buf = ctypes.create_string_buffer(_READ_CHUNK)
        self._next_id = 0
        if boot:
            rc = self.power_on()
            if rc != 0:
                self.close()
                raise ValueError(f"fresh device failed to boot: {frames.error_name(-rc)} ({-rc})")

    # ------------------------------------------------------------------ lifecycle

    def _h(self) -> int:
        if self._handle is None:
            raise ValueError("device is closed")
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle = None
            self._finalizer()

    def __enter__(self) -> DeviceRuntime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def power_on(self) -> int:
        """Boot from the flash (RAM state starts afresh). Returns 0, or the negative error code of a
        boot that failed (a power cut armed to hit during boot recovery): the device then stays off."""
        self._rx.clear()
        self._decoder = frames.FrameDecoder()
        return int(self._lib.tfa_host_boot(self._h()))

    def power_cycle(self) -> int:
        """Power off and on again keeping the flash; same result as `power_on`."""
        self._rx.clear()
        self._decoder = frames.FrameDecoder()
        return int(self._lib.tfa_host_power_cycle(self._h()))

    boot = power_on

    def is_powered_off(self) -> bool:
        return not self._lib.tfa_host_is_on(self._h())

    def cut_power_after(self, flash_ops: int, mode: CutMode = CutMode.GARBAGE, seed: int = 1) -> None:
        """The `flash_ops`-th flash program/erase from now (>= 1) is torn per `mode` and the device
        goes off: the request in progress never gets its response. `seed` drives GARBAGE."""
        if not 1 <= flash_ops <= 0xFFFFFFFF:
            raise ValueError("flash_ops must be at least 1")
        self._lib.tfa_host_arm_power_cut(self._h(), flash_ops, int(mode), seed & 0xFFFFFFFF)

    @property
    def flash_ops(self) -> int:
        """Flash program + erase operations since the device was created."""
        return int(self._lib.tfa_host_flash_ops(self._h()))

    @property
    def memory_bytes(self) -> int:
        """Heap bytes the C device holds (its flash plus its state and buffers)."""
        return int(self._lib.tfa_host_memory_bytes(self._h()))

    def model_io(self) -> tuple[TensorSpec, TensorSpec]:
        """The active model's first input and output tensors (what the device's sensor code knows);
        raises ValueError without an active model or when the engine refuses it."""
        tin, tout = CTensorInfo(), CTensorInfo()
        rc = self._lib.tfa_host_model_io(self._h(), ctypes.byref(tin), ctypes.byref(tout))
        if rc != 0:
            raise ValueError(f"no runnable active model: {frames.error_name(-rc)} ({-rc})")
        return TensorSpec.of(tin), TensorSpec.of(tout)

    def read_flash(self) -> bytes:
        size = int(self._lib.tfa_host_flash_size(self._h()))
        buf = ctypes.create_string_buffer(size)
        _check(self._lib.tfa_host_flash_read(self._h(), buf, size), "flash read")
        return buf.raw

    def load_flash(self, image: bytes) -> None:
        """Replace the flash image; the device is off afterwards, `power_on()` boots from it."""
        size = int(self._lib.tfa_host_flash_size(self._h()))
        if len(image) != size:
            raise ValueError(f"flash image is {len(image)} bytes, the device's flash is {size}")
        _check(self._lib.tfa_host_flash_load(self._h(), bytes(image), size), "flash load")
        self._rx.clear()

    # ------------------------------------------------------------------ byte stream

    def write(self, data: bytes) -> None:
        """Bytes into the device's UART. Its output is collected as it comes (the device pauses when its
        output queue is full), so any amount may be written at once."""
        handle = self._h()
        view = bytes(data)
        accepted = ctypes.c_uint32()
        while view:
            rc = self._lib.tfa_host_uart_write(handle, view, len(view), ctypes.byref(accepted))
            if rc != 0:
                raise frames.ProtocolError(f"UART write failed: {frames.error_name(-rc)}")
            view = view[accepted.value :]
            self._drain()

    def _drain(self) -> None:
        while True:
            n = int(self._lib.tfa_host_uart_read(self._h(), self._read_buf, _READ_CHUNK))
            if n == 0:
                return
            self._rx += self._read_buf.raw[:n]

    def read(self) -> bytes:
        """Every byte the device sent since the last read."""
        self._drain()
        out = bytes(self._rx)
        self._rx.clear()
        return out

    def send_frame(self, msg: frames.Request) -> frames.Response:
        """Send one request and return its response (ERROR responses included: check `.error()`).
        Stale output (answers to earlier garbage, frame-error reports with request id 0) is skipped.
        Raises `NoResponse` when the device does not answer (off, or the power went during the request)."""
        self._next_id = self._next_id % 0xFFFF + 1  # ids 1..65535; 0 is the device's "unknown request"
        request_id = self._next_id
        self.read()  # whatever was pending belongs to earlier traffic
        self._decoder = frames.FrameDecoder()
        self.write(frames.encode_frame(msg.encode(request_id)))
        for event in self._decoder.feed(self.read()):
            if event.body is None:
                raise frames.ProtocolError(f"device sent a broken frame ({frames.error_name(event.error)})")
            response = frames.decode_message(event.body)
            if response.request_id == request_id:
                return response
        if self.is_powered_off():
            raise NoResponse("device is off: the power went during the request or before it")
        raise NoResponse(f"no response to request 0x{msg.type:02x} (id {request_id})")

    request = send_frame  # the name tinyfleet/sim/runtime_driver.py uses
