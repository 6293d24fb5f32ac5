"""Errors raised by the signing library.

Every package failure carries the numeric code of docs/PROTOCOL.md section 2, the same code the C
runtime returns, so a Python refusal and a device refusal of the same bytes can be compared directly.
Messages are one line: the CLI prints them as they are.
"""

from __future__ import annotations

from typing import ClassVar


class SigningError(Exception):
    """Base of every error this library raises on bad input (never a bug)."""


class PackageError(SigningError):
    """A package or manifest is refused. `code` and `name` follow docs/PROTOCOL.md section 2."""

    code: ClassVar[int] = 0
    name: ClassVar[str] = "OK"

    def __str__(self) -> str:
        detail = super().__str__()
        return f"{self.name} ({self.code}): {detail}" if detail else f"{self.name} ({self.code})"


class Truncated(PackageError):
    code = 1
    name = "TRUNCATED"


class BadMagic(PackageError):
    code = 2
    name = "BAD_MAGIC"


class UnsupportedFormat(PackageError):
    code = 3
    name = "UNSUPPORTED_FORMAT"


class UnknownKey(PackageError):
    code = 4
    name = "UNKNOWN_KEY"


class BadSignature(PackageError):
    code = 5
    name = "BAD_SIGNATURE"


class DigestMismatch(PackageError):
    code = 6
    name = "DIGEST_MISMATCH"


class SizeMismatch(PackageError):
    code = 7
    name = "SIZE_MISMATCH"


class FieldOutOfRange(PackageError):
    code = 8
    name = "FIELD_RANGE"


class PolicyError(PackageError):
    """A valid package that this particular device must not install (codes 32..63)."""


class WrongHardware(PolicyError):
    code = 32
    name = "WRONG_HARDWARE"


class RuntimeTooOld(PolicyError):
    code = 33
    name = "RUNTIME_TOO_OLD"


class RollbackRefused(PolicyError):
    code = 34
    name = "ROLLBACK_REFUSED"


class Replayed(PolicyError):
    code = 35
    name = "REPLAYED"


class TooLarge(PolicyError):
    code = 36
    name = "TOO_LARGE"


class ArenaTooLarge(PolicyError):
    code = 37
    name = "ARENA_TOO_LARGE"


class InvalidModelError(SigningError):
    """The bytes are not a usable .tflite flatbuffer (code 128, MODEL_INVALID)."""

    code: ClassVar[int] = 128
    name: ClassVar[str] = "MODEL_INVALID"


class KeyFileError(SigningError):
    """A key file is missing, unreadable, of the wrong kind, or its passphrase is wrong."""


ALL_PACKAGE_ERRORS: tuple[type[PackageError], ...] = (
    Truncated,
    BadMagic,
    UnsupportedFormat,
    UnknownKey,
    BadSignature,
    DigestMismatch,
    SizeMismatch,
    FieldOutOfRange,
    WrongHardware,
    RuntimeTooOld,
    RollbackRefused,
    Replayed,
    TooLarge,
    ArenaTooLarge,
)

ERROR_BY_CODE: dict[int, type[PackageError]] = {cls.code: cls for cls in ALL_PACKAGE_ERRORS}
