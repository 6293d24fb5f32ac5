"""Every signing error takes its code and name from the one table, `tinyfleet.signing.codes.ErrorCode`."""

from __future__ import annotations

import json

import pytest

from tinyfleet.signing import errors
from tinyfleet.signing.codes import ErrorCode


@pytest.mark.parametrize("cls", errors.ALL_PACKAGE_ERRORS, ids=lambda cls: cls.__name__)
def test_package_errors_come_from_the_table(cls: type[errors.PackageError]) -> None:
    assert isinstance(cls.code, ErrorCode) and cls.code is not ErrorCode.OK
    assert cls.name == cls.code.name
    assert errors.ERROR_BY_CODE[int(cls.code)] is cls
    # int-compatible: formats, compares and serialises as the bare number
    assert str(cls("detail")) == f"{cls.code.name} ({int(cls.code)}): detail"
    assert json.loads(json.dumps({"code": cls.code})) == {"code": int(cls.code)}


def test_codes_are_unique_and_policy_codes_are_in_their_range() -> None:
    assert len(errors.ERROR_BY_CODE) == len(errors.ALL_PACKAGE_ERRORS)
    for cls in errors.ALL_PACKAGE_ERRORS:
        assert (32 <= cls.code < 64) == issubclass(cls, errors.PolicyError)


def test_messages_are_unchanged() -> None:
    assert str(errors.Truncated("short")) == "TRUNCATED (1): short"
    assert str(errors.TooLarge()) == "TOO_LARGE (36)"
    assert errors.InvalidModelError.code == ErrorCode.MODEL_INVALID == 128
    assert errors.InvalidModelError.name == "MODEL_INVALID"
