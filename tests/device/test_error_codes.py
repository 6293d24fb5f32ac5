"""The error table has one source (`tinyfleet.signing.codes.ErrorCode`); errors.h and the C name table
must match it code for code and name for name."""

from __future__ import annotations

import ctypes
import re

from tests.support.paths import REPO
from tinyfleet.signing.codes import ErrorCode, error_name

HEADER = REPO / "agent_firmware" / "core" / "include" / "tfa" / "errors.h"


def header_codes() -> dict[str, int]:
    body = HEADER.read_text()
    enum = re.search(r"typedef enum \{(.*?)\} tfa_err_t;", body, re.S)
    assert enum, "tfa_err_t not found in errors.h"
    pairs = re.findall(r"\bTFA_(?:ERR_)?([A-Z0-9_]+)\s*=\s*(\d+)", enum.group(1))
    return {name: int(value) for name, value in pairs}


def test_header_and_enum_agree() -> None:
    assert header_codes() == {code.name: code.value for code in ErrorCode}


def test_c_name_table_agrees() -> None:
    from tinyfleet.device.library import load_library

    lib = load_library()
    lib.tfa_err_name.argtypes = [ctypes.c_int]
    lib.tfa_err_name.restype = ctypes.c_char_p
    for code in ErrorCode:
        expected = "OK" if code is ErrorCode.OK else code.name
        assert lib.tfa_err_name(code.value).decode() == expected
    for unknown in (10, 31, 45, 200, 255):
        assert lib.tfa_err_name(unknown).decode() == "UNKNOWN" == error_name(unknown)
