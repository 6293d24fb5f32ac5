"""The error codes of docs/PROTOCOL.md section 2: the one Python source of them.

The C runtime's `agent_firmware/core/include/tfa/errors.h` carries the same table; the test
`tests/device/test_error_codes.py` parses that header and fails on any difference in a code or a name.
Everything in Python that names or compares a device error uses `ErrorCode`, never a literal number.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """`tfa_err_t`: 0 is success, every other value a refusal; functions in C return its negative."""

    OK = 0
    TRUNCATED = 1
    BAD_MAGIC = 2
    UNSUPPORTED_FORMAT = 3
    UNKNOWN_KEY = 4
    BAD_SIGNATURE = 5
    DIGEST_MISMATCH = 6
    SIZE_MISMATCH = 7
    FIELD_RANGE = 8
    KEY_UNWRAP = 9
    WRONG_HARDWARE = 32
    RUNTIME_TOO_OLD = 33
    ROLLBACK_REFUSED = 34
    REPLAYED = 35
    TOO_LARGE = 36
    ARENA_TOO_LARGE = 37
    WRONG_BASE = 38
    BAD_STATE = 39
    BAD_OFFSET = 40
    NO_PREVIOUS = 41
    SELFTEST_FAILED = 42
    NOT_ENCRYPTED = 43
    MODEL_RAM_TOO_SMALL = 44
    FLASH_IO = 64
    FLASH_NOT_ERASED = 65
    STATE_CORRUPT = 66
    FRAME_CRC = 96
    FRAME_DECODE = 97
    FRAME_TOO_LONG = 98
    UNKNOWN_MESSAGE = 99
    BAD_MESSAGE = 100
    MODEL_INVALID = 128
    UNSUPPORTED_OP = 129
    ARENA_EXHAUSTED = 130
    DELTA_CORRUPT = 160


def error_name(code: int) -> str:
    """Short stable name of a code ("BAD_SIGNATURE"), "UNKNOWN" outside the table (as `tfa_err_name`)."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return "UNKNOWN"
