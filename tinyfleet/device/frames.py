"""The runtime's wire protocol on the Python side: framing and messages (docs/PROTOCOL.md section 3).

Byte for byte the same as `agent_firmware/core/src/frame.c` and `proto.c`:

* a frame on the wire is ``0x00 || COBS(body || crc32_le(body)) || 0x00`` (`encode_frame`,
  `FrameDecoder`);
* a message (the frame body) is ``u8 type || u16 request_id || payload``; a response echoes the
  request id with ``type | 0x80``, or is an ERROR message (`Request`, `Response`).

This module only formats and parses bytes. It decides nothing about packages: every check is the C
runtime's, and its answers come back as error codes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from tinyfleet.signing.codes import ErrorCode as ErrorCode
from tinyfleet.signing.codes import error_name as error_name  # re-exported: the one error table

MAX_BODY = 1088
"""Largest frame body (message) either side sends or accepts."""
CRC_SIZE = 4
HEADER_SIZE = 3
MAX_CHUNK = MAX_BODY - HEADER_SIZE - 4
"""Largest data in one INSTALL_CHUNK request (1081 bytes: a 1 KiB chunk fits)."""
MAX_INFER_INPUT = MAX_BODY - HEADER_SIZE - 5
PROTOCOL_VERSION = 1
RESPONSE_BIT = 0x80
INFER_RUN = 0x01
FEATURE_INFERENCE = 0x01

# Error codes of docs/PROTOCOL.md section 2 that the wire layer itself produces (from the one table,
# `tinyfleet.signing.codes`; `error_name` is re-exported from there).
FRAME_CRC = ErrorCode.FRAME_CRC
FRAME_DECODE = ErrorCode.FRAME_DECODE
FRAME_TOO_LONG = ErrorCode.FRAME_TOO_LONG
UNKNOWN_MESSAGE = ErrorCode.UNKNOWN_MESSAGE
BAD_MESSAGE = ErrorCode.BAD_MESSAGE


KEY_WRAP_SIZE = 80  # TFA_KEY_WRAP_SIZE, docs/PROTOCOL.md 6.3


class MsgType(IntEnum):
    HELLO = 0x01
    STATE = 0x02
    INSTALL_BEGIN = 0x10
    INSTALL_CHUNK = 0x11
    INSTALL_END = 0x12
    ACTIVATE = 0x13
    SELFTEST = 0x14
    CONFIRM = 0x15
    REVERT = 0x16
    INSTALL_ABORT = 0x17
    INSTALL_KEY = 0x18
    INFER = 0x20
    TELEMETRY = 0x30
    ERROR = 0xFF


class Phase(IntEnum):
    IDLE = 0
    DOWNLOADING = 1
    DOWNLOADED = 2
    TRIAL = 3


NO_SLOT = 0xFF


class ProtocolError(Exception):
    """Bytes from the device that do not follow section 3 (a bug or a broken link, never a refusal)."""


class DeviceError(Exception):
    """The device answered a request with an ERROR message."""

    def __init__(self, code: int, request_type: int, detail: str) -> None:
        super().__init__(f"{error_name(code)} ({code}) for request 0x{request_type:02x}: {detail}")
        self.code = code
        self.request_type = request_type
        self.detail = detail

    @property
    def name(self) -> str:
        return error_name(self.code)


# --------------------------------------------------------------------------- framing


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing: no 0x00 in the result; canonical form (a final block of
    exactly 254 non-zero bytes is followed by an empty 0x01 block)."""
    out = bytearray()
    for part in data.split(b"\x00"):
        # Each zero-separated part becomes blocks of at most 254 bytes; a full block implies no zero.
        while len(part) >= 254:
            out.append(0xFF)
            out += part[:254]
            part = part[254:]
        out.append(len(part) + 1)
        out += part
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of `cobs_encode`; also accepts a final full block without the empty 0x01 block.
    Raises `ProtocolError` on a zero byte or a block running past the end."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError("zero byte inside a COBS frame")
        end = i + code
        if end > n:
            raise ProtocolError("COBS block runs past the end of the frame")
        block = data[i + 1 : end]
        if 0 in block:
            raise ProtocolError("zero byte inside a COBS frame")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(body: bytes) -> bytes:
    """A frame ready for the UART: ``0x00 || COBS(body || crc32_le(body)) || 0x00``."""
    if len(body) > MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes is above the maximum {MAX_BODY}")
    return b"\x00" + cobs_encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"


@dataclass(frozen=True)
class FrameEvent:
    """One frame received: `body` when its CRC matched, else `error` (FRAME_CRC, FRAME_DECODE or
    FRAME_TOO_LONG) and no body."""

    body: bytes | None
    error: int = 0

    @property
    def ok(self) -> bool:
        return self.body is not None


class FrameDecoder:
    """Streaming decoder: feed it any slices of the byte stream, it yields every frame they complete.
    Resynchronises at the next 0x00 after garbage; empty frames are skipped; a frame longer than
    `max_body` is reported as FRAME_TOO_LONG without buffering more than that."""

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self._max_encoded = max_body + CRC_SIZE + (max_body + CRC_SIZE) // 254 + 1
        self._buf = bytearray()
        self._too_long = False

    def feed(self, data: bytes) -> Iterator[FrameEvent]:
        parts = bytes(data).split(b"\x00")
        for index, part in enumerate(parts):
            self._append(part)
            if index < len(parts) - 1:  # a delimiter follows this part
                event = self._finish()
                if event is not None:
                    yield event

    def _append(self, part: bytes) -> None:
        if self._too_long:
            return
        if len(self._buf) + len(part) > self._max_encoded:
            self._too_long = True
            self._buf.clear()
            return
        self._buf += part

    def _finish(self) -> FrameEvent | None:
        encoded, too_long = bytes(self._buf), self._too_long
        self._buf.clear()
        self._too_long = False
        if too_long:
            return FrameEvent(None, FRAME_TOO_LONG)
        if not encoded:
            return None
        try:
            decoded = cobs_decode(encoded)
        except ProtocolError:
            return FrameEvent(None, FRAME_DECODE)
        if len(decoded) > MAX_BODY + CRC_SIZE:
            return FrameEvent(None, FRAME_TOO_LONG)
        if len(decoded) < CRC_SIZE:
            return FrameEvent(None, FRAME_DECODE)
        body, crc = decoded[:-CRC_SIZE], decoded[-CRC_SIZE:]
        if struct.unpack("<I", crc)[0] != zlib.crc32(body):
            return FrameEvent(None, FRAME_CRC)
        return FrameEvent(body)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class Request:
    """A request without its id: the transport (DeviceRuntime, QemuDevice) numbers requests."""

    type: int
    payload: bytes = b""

    def encode(self, request_id: int) -> bytes:
        if not 0 <= request_id <= 0xFFFF:
            raise ValueError(f"request id {request_id} is not a u16")
        return struct.pack("<BH", self.type, request_id) + self.payload


def hello() -> Request:
    return Request(MsgType.HELLO)


def state() -> Request:
    return Request(MsgType.STATE)


def install_begin(manifest: bytes) -> Request:
    return Request(MsgType.INSTALL_BEGIN, bytes(manifest))


def install_chunk(offset: int, data: bytes) -> Request:
    """`offset` is the payload offset of `data` (package offset minus the 292-byte manifest)."""
    if len(data) > MAX_CHUNK:
        raise ValueError(f"chunk of {len(data)} bytes is above the maximum {MAX_CHUNK}")
    return Request(MsgType.INSTALL_CHUNK, struct.pack("<I", offset) + bytes(data))


def install_key(wrap: bytes) -> Request:
    """The 80-byte content key wrap of an encrypted package, after INSTALL_BEGIN and before the first
    chunk (again after every begin that resumes: the runtime keeps the key in RAM only)."""
    if len(wrap) != KEY_WRAP_SIZE:
        raise ValueError(f"a content key wrap is {KEY_WRAP_SIZE} bytes, not {len(wrap)}")
    return Request(MsgType.INSTALL_KEY, bytes(wrap))


def install_end() -> Request:
    return Request(MsgType.INSTALL_END)


def install_abort() -> Request:
    return Request(MsgType.INSTALL_ABORT)


def activate() -> Request:
    return Request(MsgType.ACTIVATE)


def selftest() -> Request:
    return Request(MsgType.SELFTEST)


def confirm() -> Request:
    return Request(MsgType.CONFIRM)


def revert() -> Request:
    return Request(MsgType.REVERT)


def infer(data: bytes, offset: int = 0, run: bool = True) -> Request:
    """Write `data` into the input tensor at `offset`, then (if `run`) run one inference. Inputs larger
    than MAX_INFER_INPUT go in several requests, only the last with run=True."""
    if len(data) > MAX_INFER_INPUT:
        raise ValueError(f"input slice of {len(data)} bytes is above the maximum {MAX_INFER_INPUT}")
    return Request(MsgType.INFER, struct.pack("<IB", offset, INFER_RUN if run else 0) + bytes(data))


def telemetry() -> Request:
    return Request(MsgType.TELEMETRY)


@dataclass(frozen=True)
class Response:
    type: int
    request_id: int
    payload: bytes

    @property
    def is_error(self) -> bool:
        return self.type == MsgType.ERROR

    def error(self) -> DeviceError | None:
        """The refusal this response carries, or None for a success response."""
        if not self.is_error:
            return None
        if len(self.payload) < 2:
            raise ProtocolError("ERROR message shorter than its 2 fixed bytes")
        # MCU builds send no detail (TFA_NO_ERROR_NAMES): the name comes from the code, as on the host.
        detail = self.payload[2:].decode("ascii", errors="replace") or error_name(self.payload[0])
        return DeviceError(self.payload[0], self.payload[1], detail)

    def raise_for_error(self) -> Response:
        err = self.error()
        if err is not None:
            raise err
        return self


def decode_message(body: bytes) -> Response:
    if len(body) < HEADER_SIZE:
        raise ProtocolError(f"message of {len(body)} bytes is shorter than its 3-byte header")
    msg_type, request_id = struct.unpack_from("<BH", body)
    return Response(msg_type, request_id, bytes(body[HEADER_SIZE:]))


# --------------------------------------------------------------------------- response bodies


def _expect(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise ProtocolError(f"{what} response body is {len(payload)} bytes, expected {size}")


@dataclass(frozen=True)
class Hello:
    protocol_version: int
    features: int
    max_body: int
    runtime_version: int
    hardware_class: int
    ram_budget: int
    slot_size: int

    @property
    def has_inference(self) -> bool:
        return bool(self.features & FEATURE_INFERENCE)


def parse_hello(payload: bytes) -> Hello:
    _expect(payload, 20, "HELLO")
    return Hello(*struct.unpack("<BBHIIII", payload))


@dataclass(frozen=True)
class SlotState:
    """One slot as STATE reports it: its fields are filled when `valid` or when the slot is the download
    target (the manifest being downloaded), zero otherwise."""

    valid: bool
    model_name: str
    version: tuple[int, int, int]
    sequence: int
    security_counter: int
    model_size: int
    arena_bytes: int
    model_sha256: bytes

    @property
    def version_str(self) -> str:
        return "{}.{}.{}".format(*self.version)


SLOT_SIZE = 87
STATE_HEADER = 28
STATE_SIZE = STATE_HEADER + 2 * SLOT_SIZE


def _parse_slot(b: bytes) -> SlotState:
    name = b[1:33].split(b"\x00", 1)[0].decode("utf-8", errors="replace")
    major, minor, patch, seq, counter, size, arena = struct.unpack_from("<HHHIIII", b, 33)
    return SlotState(b[0] == 1, name, (major, minor, patch), seq, counter, size, arena, bytes(b[55:87]))


@dataclass(frozen=True)
class DeviceState:
    phase: Phase
    active_slot: int | None
    target_slot: int | None
    boot_attempts: int
    last_error: int
    selftest_passed: bool
    security_floor: int
    download_offset: int
    download_size: int
    runtime_version: int
    hardware_class: int
    slots: tuple[SlotState, SlotState]

    @property
    def active(self) -> SlotState | None:
        return None if self.active_slot is None else self.slots[self.active_slot]


def parse_state(payload: bytes) -> DeviceState:
    _expect(payload, STATE_SIZE, "STATE")
    phase, active, target, boots, last_error, passed, _reserved, floor, offset, size, rt_version, hw = (
        struct.unpack_from("<BBBBBBHIIIII", payload)
    )
    try:
        phase_value = Phase(phase)
    except ValueError as exc:
        raise ProtocolError(f"unknown phase {phase}") from exc
    for what, slot in (("active", active), ("target", target)):
        if slot not in (0, 1, NO_SLOT):
            raise ProtocolError(f"{what} slot {slot} is not 0, 1 or 0xFF")
    first = STATE_HEADER
    slots = (_parse_slot(payload[first : first + SLOT_SIZE]), _parse_slot(payload[first + SLOT_SIZE :]))
    return DeviceState(
        phase_value, None if active == NO_SLOT else active, None if target == NO_SLOT else target, boots,
        last_error, bool(passed), floor, offset, size, rt_version, hw, slots,
    )  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """INSTALL_BEGIN / INSTALL_CHUNK response: payload bytes received so far, and expected in all."""

    offset: int
    size: int


def parse_progress(payload: bytes) -> Progress:
    _expect(payload, 8, "progress")
    return Progress(*struct.unpack("<II", payload))


@dataclass(frozen=True)
class PhaseReport:
    """INSTALL_END / ACTIVATE / SELFTEST / CONFIRM / REVERT response."""

    phase: Phase
    active_slot: int | None


def parse_phase(payload: bytes) -> PhaseReport:
    _expect(payload, 2, "phase")
    try:
        phase = Phase(payload[0])
    except ValueError as exc:
        raise ProtocolError(f"unknown phase {payload[0]}") from exc
    return PhaseReport(phase, None if payload[1] == NO_SLOT else payload[1])


TELEMETRY_SIZE = 188
TELEMETRY_CLASSES = 16
Q16_ONE = 65536


@dataclass(frozen=True)
class ModelTelemetry:
    """The active model's inference telemetry kept by the runtime (docs/PROTOCOL.md 3.2.6, bytes 48..)."""

    latency_estimated: bool
    model_sha256: str | None  # None: no model tracked (no active model yet)
    inferences: int
    errors: int
    classified: int
    cpu_hz: int
    arena_bytes: int
    cycles_total: int
    confidence_q16_total: int
    histogram: tuple[int, ...]  # TELEMETRY_CLASSES counts of top-1 indices
    histogram_other: int  # top-1 index >= TELEMETRY_CLASSES

    @property
    def confidence_mean(self) -> float:
        return self.confidence_q16_total / Q16_ONE / self.classified if self.classified else 0.0

    @property
    def cycles_mean(self) -> float:
        return self.cycles_total / self.inferences if self.inferences else 0.0

    @property
    def latency_us_mean(self) -> float:
        """Mean latency in microseconds from cycles and the clock; 0 if the clock is unknown."""
        return self.cycles_mean * 1e6 / self.cpu_hz if self.cpu_hz else 0.0


@dataclass(frozen=True)
class Telemetry:
    frames_ok: int
    frame_crc_errors: int
    frame_decode_errors: int
    frame_too_long: int
    requests: int
    error_responses: int
    chunk_bytes: int
    installs_completed: int
    inferences: int
    inference_errors: int
    latency_us_total: int
    model: ModelTelemetry


def parse_telemetry(payload: bytes) -> Telemetry:
    _expect(payload, TELEMETRY_SIZE, "TELEMETRY")
    c = struct.unpack_from("<10IQ", payload)
    flags, classes = payload[48], payload[49]
    if classes != TELEMETRY_CLASSES:
        raise ProtocolError(f"TELEMETRY histogram of {classes} classes, expected {TELEMETRY_CLASSES}")
    sha = payload[52:84]
    inferences, errors, classified, cpu_hz, arena, cycles, conf = struct.unpack_from("<5I2Q", payload, 84)
    histogram = struct.unpack_from(f"<{TELEMETRY_CLASSES}I", payload, 120)
    (other,) = struct.unpack_from("<I", payload, 184)
    model = ModelTelemetry(
        latency_estimated=bool(flags & 1),
        model_sha256=sha.hex() if flags & 2 else None,
        inferences=inferences,
        errors=errors,
        classified=classified,
        cpu_hz=cpu_hz,
        arena_bytes=arena,
        cycles_total=cycles,
        confidence_q16_total=conf,
        histogram=tuple(histogram),
        histogram_other=other,
    )
    return Telemetry(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], model)


@dataclass(frozen=True)
class InferResult:
    latency_us: int
    output: bytes


def parse_infer(payload: bytes) -> InferResult | None:
    """None for an input-only INFER (no run); the output of the inference otherwise."""
    if not payload:
        return None
    if len(payload) < 4:
        raise ProtocolError("INFER response shorter than its latency field")
    return InferResult(struct.unpack_from("<I", payload)[0], bytes(payload[4:]))
