"""Errors raised by the signing library.

Every package failure carries the numeric code of docs/PROTOCOL.md section 2, the same code the C
runtime returns, so a Python refusal and a device refusal of the same bytes can be compared directly.
Messages are one line: the CLI prints them as they are.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tinyfleet.signing.codes import ErrorCode


class SigningError(Exception):
    """Base of every error this library raises on bad input (never a bug)."""


class PackageError(SigningError):
    """A package or manifest is refused. `code` and `name` follow docs/PROTOCOL.md section 2.

    A subclass sets only `code` (an `ErrorCode`); its `name` is that code's name.
    """

    code: ClassVar[ErrorCode] = ErrorCode.OK
    name: ClassVar[str] = ErrorCode.OK.name

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.name = cls.code.name

    def __str__(self) -> str:
        detail = super().__str__()
        return f"{self.name} ({self.code}): {detail}" if detail else f"{self.name} ({self.code})"


class Truncated(PackageError):
    code = ErrorCode.TRUNCATED


class BadMagic(PackageError):
    code = ErrorCode.BAD_MAGIC


class UnsupportedFormat(PackageError):
    code = ErrorCode.UNSUPPORTED_FORMAT


class UnknownKey(PackageError):
    code = ErrorCode.UNKNOWN_KEY


class BadSignature(PackageError):
    code = ErrorCode.BAD_SIGNATURE


class DigestMismatch(PackageError):
    code = ErrorCode.DIGEST_MISMATCH


class SizeMismatch(PackageError):
    code = ErrorCode.SIZE_MISMATCH


class FieldOutOfRange(PackageError):
    code = ErrorCode.FIELD_RANGE


class KeyUnwrap(PackageError):
    """An encrypted package's content key wrap does not open (PROTOCOL section 6)."""

    code = ErrorCode.KEY_UNWRAP


class PolicyError(PackageError):
    """A valid package that this particular device must not install (codes 32..63)."""


class WrongHardware(PolicyError):
    code = ErrorCode.WRONG_HARDWARE


class RuntimeTooOld(PolicyError):
    code = ErrorCode.RUNTIME_TOO_OLD


class RollbackRefused(PolicyError):
    code = ErrorCode.ROLLBACK_REFUSED


class Replayed(PolicyError):
    code = ErrorCode.REPLAYED


class TooLarge(PolicyError):
    code = ErrorCode.TOO_LARGE


class ArenaTooLarge(PolicyError):
    code = ErrorCode.ARENA_TOO_LARGE


class NotEncrypted(PolicyError):
    """The device's policy requires encrypted payloads and the package is clear."""

    code = ErrorCode.NOT_ENCRYPTED


class ModelRamTooSmall(PolicyError):
    """An encrypted model is larger than the device's model RAM, where it would have to run (PROTOCOL 6.6)."""

    code = ErrorCode.MODEL_RAM_TOO_SMALL


class InvalidModelError(SigningError):
    """The bytes are not a usable .tflite flatbuffer (code 128, MODEL_INVALID)."""

    code: ClassVar[ErrorCode] = ErrorCode.MODEL_INVALID
    name: ClassVar[str] = ErrorCode.MODEL_INVALID.name


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
# KeyUnwrap, NotEncrypted and ModelRamTooSmall are left out: they judge a package together with a device
# key, policy or RAM, not a package file alone, so tests/vectors (one expected error per file) cannot
# carry them.

ERROR_BY_CODE: dict[int, type[PackageError]] = {cls.code: cls for cls in ALL_PACKAGE_ERRORS}
