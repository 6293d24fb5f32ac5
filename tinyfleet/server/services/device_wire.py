"""The wire format of the messages devices send and the server's replies to them (PROTOCOL section 4),
without the database: topics, the chunk and chunk-error encodings, the checks of a message's JSON."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from tinyfleet.server.services.devices import PHASES
from tinyfleet.server.services.wire_validation import check_message
from tinyfleet.signing.codes import ErrorCode

CHUNK_FORMAT = 1
CHUNK_ERROR_FORMAT = 0xFF  # first byte of the reply to a malformed chunk request (PROTOCOL 4.3)
CHUNK_ERROR_REASON_MAX = 200
MAX_JSON_BYTES = 16 * 1024
MAX_TELEMETRY_BYTES = 256 * 1024
KINDS = ("reported", "presence", "chunk/req", "status", "telemetry")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: bytes
    retain: bool = False


class Malformed(ValueError):
    """A device message that breaks PROTOCOL section 4; counted and logged, never fatal."""


def split_topic(topic: str) -> tuple[str, str] | None:
    """'tf/{id}/{kind}' -> (id, kind) for the kinds a device sends, else None."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != "tf" or not parts[1]:
        return None
    kind = "/".join(parts[2:])
    return (parts[1], kind) if kind in KINDS else None


def encode_chunk(package_id: str, offset: int, package_size: int, data: bytes) -> bytes:
    ident = package_id.encode("ascii")
    return (
        struct.pack("<BB", CHUNK_FORMAT, len(ident)) + ident + struct.pack("<II", offset, package_size) + data
    )


def encode_chunk_error(code: int, reason: str) -> bytes:
    """The reply to a malformed chunk request (PROTOCOL 4.3): `FF`, the error code, an ASCII reason."""
    text = reason.encode("ascii", "replace")[:CHUNK_ERROR_REASON_MAX] or b"?"
    return bytes((CHUNK_ERROR_FORMAT, code)) + text


def decode_chunk_error(buf: bytes) -> tuple[int, str]:
    """Inverse of encode_chunk_error (used by tests and scripted devices)."""
    if len(buf) < 3 or buf[0] != CHUNK_ERROR_FORMAT:
        raise ValueError("not a chunk error")
    return buf[1], buf[2:].decode("ascii")


class BadChunkRequest(Malformed):
    """A chunk request that breaks PROTOCOL 4.3; answered with a chunk error carrying `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def parse_chunk_request(payload: bytes) -> tuple[str, int, int]:
    """(package_id, offset, length) of a well-formed chunk request (PROTOCOL 4.3), else BadChunkRequest
    with BAD_OFFSET for the offset and BAD_MESSAGE for anything else."""
    try:
        req = json_object(payload, MAX_JSON_BYTES)
    except Malformed as exc:
        raise BadChunkRequest(ErrorCode.BAD_MESSAGE, str(exc)) from None
    package_id = req.get("package_id")
    if (
        not isinstance(package_id, str)
        or not package_id.isascii()
        or not package_id.isprintable()
        or not 0 < len(package_id) < 256
    ):
        reason = "package_id must be printable ASCII of 1..255 characters"
        raise BadChunkRequest(ErrorCode.BAD_MESSAGE, reason)
    try:
        offset = int_field(req, "offset", 0, 0xFFFFFFFF)
    except Malformed as exc:
        raise BadChunkRequest(ErrorCode.BAD_OFFSET, str(exc)) from None
    try:
        length = int_field(req, "length", 1, 0xFFFFFFFF)
    except Malformed as exc:
        raise BadChunkRequest(ErrorCode.BAD_MESSAGE, str(exc)) from None
    wrong = check_message("chunk/req", req)  # the schema, after the checks that pick the code
    if wrong is not None:
        raise BadChunkRequest(ErrorCode.BAD_MESSAGE, wrong)
    return package_id, offset, length


def decode_chunk(buf: bytes) -> tuple[str, int, int, bytes]:
    """Inverse of encode_chunk (used by tests and scripted devices)."""
    if len(buf) < 2 or buf[0] != CHUNK_FORMAT:
        raise ValueError("not a format-1 chunk")
    n = buf[1]
    if len(buf) < 2 + n + 8:
        raise ValueError("chunk header truncated")
    ident = buf[2 : 2 + n].decode("ascii")
    offset, size = struct.unpack_from("<II", buf, 2 + n)
    return ident, offset, size, buf[2 + n + 8 :]


def json_object(payload: bytes, limit: int) -> dict[str, Any]:
    if len(payload) > limit:
        raise Malformed(f"payload of {len(payload)} bytes is above {limit}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Malformed("payload is not UTF-8 JSON") from None
    if not isinstance(obj, dict):
        raise Malformed("payload is not a JSON object")
    return obj


def int_field(obj: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Malformed(f"{key} must be an integer in {lo}..{hi}")
    return value


def check_reported(obj: dict[str, Any]) -> None:
    int_field(obj, "runtime_version", 0, 0xFFFFFFFF)
    int_field(obj, "hardware_class", 0, 0xFFFFFFFF)
    if obj.get("phase") not in PHASES:
        raise Malformed(f"phase must be one of {', '.join(PHASES)}")
    if obj.get("active_slot") not in (0, 1, None):
        raise Malformed("active_slot must be 0, 1 or null")
    slots = obj.get("slots", [])
    if not isinstance(slots, list) or len(slots) > 2 or not all(isinstance(s, dict) for s in slots):
        raise Malformed("slots must be a list of at most two objects")
    for s in slots:
        sha = s.get("model_sha256")
        if s.get("valid") and (not isinstance(sha, str) or len(sha) != 64):
            raise Malformed("a valid slot needs a 64-hex-digit model_sha256")


def schema_checked(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """obj, if valid per the kind's schema (docs/schemas, packaged); else Malformed: counted, one log line."""
    wrong = check_message(kind, obj)
    if wrong is not None:
        raise Malformed(f"not valid per its schema: {wrong}")
    return obj
