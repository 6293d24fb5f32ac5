"""Manifest and package: round trip, check order, every flipped byte, every truncation, wrong keys."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from tests.support.paths import VECTORS
from tinyfleet.signing import errors
from tinyfleet.signing import manifest as mf
from tinyfleet.signing.keys import TrustStore, key_id, private_key_from_seed
from tinyfleet.signing.package import build_package, inspect, verify_package
from tinyfleet.signing.selftest import selftest_input

MODEL = (VECTORS / "model.tflite").read_bytes()
KEY = private_key_from_seed(hashlib.sha256(b"test_signing_manifest key").digest())
OTHER = private_key_from_seed(hashlib.sha256(b"test_signing_manifest other").digest())
STORE = TrustStore([KEY])


def make(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "name": "kws",
        "version": "1.2.3",
        "sequence": 10,
        "security_counter": 2,
        "hardware_class": 7,
        "min_runtime_version": "0.1.0",
        "created_at": 1_700_000_000,
    }
    fields.update(overrides)
    return build_package(MODEL, KEY, **fields)  # type: ignore[arg-type]


PACKAGE = make()


def test_round_trip_keeps_every_field() -> None:
    verified = verify_package(PACKAGE, STORE)
    m = verified.manifest
    assert verified.payload == MODEL
    assert (m.model_name, m.version, m.version_str) == ("kws", (1, 2, 3), "1.2.3")
    assert (m.sequence, m.security_counter, m.hardware_class) == (10, 2, 7)
    assert m.min_runtime_version == 0x000100 and m.min_runtime_str == "0.1.0"
    assert m.payload_encoding == mf.ENC_RAW and m.payload_size == m.model_size == len(MODEL)
    assert m.payload_sha256 == m.model_sha256 == hashlib.sha256(MODEL).digest()
    assert m.delta_base_sha256 == bytes(32) and m.selftest_output_sha256 == bytes(32)
    assert m.arena_bytes > 0 and m.arena_bytes % 16 == 0
    assert m.created_at == 1_700_000_000 and m.key_id == key_id(KEY)
    assert len(PACKAGE) == mf.MANIFEST_SIZE + len(MODEL)
    # Re-encoding the decoded manifest gives back the signed bytes exactly.
    assert mf.encode(m) == PACKAGE[: mf.SIGNED_SIZE]
    assert mf.sign(replace(m, signature=bytes(64)), KEY) == PACKAGE[: mf.MANIFEST_SIZE]


def test_layout_offsets_match_the_protocol_table() -> None:
    assert PACKAGE[:4] == b"TFMF"
    assert PACKAGE[4:6] == b"\x01\x00" and PACKAGE[6:8] == (292).to_bytes(2, "little")
    assert PACKAGE[8:11] == b"kws" and PACKAGE[11:40] == bytes(29)
    assert PACKAGE[40:46] == b"\x01\x00\x02\x00\x03\x00"
    assert int.from_bytes(PACKAGE[48:52], "little") == 10
    assert int.from_bytes(PACKAGE[56:60], "little") == 7
    assert int.from_bytes(PACKAGE[60:64], "little") == 0x100
    assert PACKAGE[72:104] == hashlib.sha256(MODEL).digest()
    assert PACKAGE[220:228] == key_id(KEY)
    KEY.public_key().verify(PACKAGE[228:292], PACKAGE[:228])  # raises if not a signature over 0..227
    for name, (off, size) in mf.OFFSETS.items():
        assert off + size <= mf.MANIFEST_SIZE, name


def expected_for_flipped_byte(offset: int) -> type[errors.PackageError]:
    if offset < 4:
        return errors.BadMagic
    if offset < 8:
        return errors.UnsupportedFormat
    if mf.KEY_ID_OFFSET <= offset < mf.KEY_ID_OFFSET + 8:
        return errors.UnknownKey
    if offset < mf.MANIFEST_SIZE:
        return errors.BadSignature
    return errors.DigestMismatch


@pytest.mark.parametrize("bit", [0x01, 0x80])
def test_every_flipped_byte_is_refused_with_the_right_error(bit: int) -> None:
    for offset in range(len(PACKAGE)):
        tampered = bytearray(PACKAGE)
        tampered[offset] ^= bit
        with pytest.raises(errors.PackageError) as info:
            verify_package(bytes(tampered), STORE)
        assert type(info.value) is expected_for_flipped_byte(offset), offset


def test_every_truncation_is_refused() -> None:
    for length in range(len(PACKAGE)):
        expected = errors.Truncated if length < mf.MANIFEST_SIZE else errors.SizeMismatch
        with pytest.raises(expected):
            verify_package(PACKAGE[:length], STORE)
    with pytest.raises(errors.SizeMismatch):
        verify_package(PACKAGE + b"\0", STORE)


def test_manifest_alone_parses_but_is_not_a_package() -> None:
    assert mf.parse(PACKAGE[: mf.MANIFEST_SIZE], STORE).model_name == "kws"
    with pytest.raises(errors.SizeMismatch):
        verify_package(PACKAGE[: mf.MANIFEST_SIZE], STORE)


def test_wrong_or_missing_key_is_refused() -> None:
    with pytest.raises(errors.UnknownKey, match=key_id(KEY).hex()):
        verify_package(PACKAGE, TrustStore([OTHER]))
    with pytest.raises(errors.UnknownKey):
        verify_package(PACKAGE, TrustStore())
    # Rotation: a store with the old and the new key accepts both.
    both = TrustStore([OTHER, KEY])
    assert verify_package(PACKAGE, both).manifest.key_id == key_id(KEY)
    assert verify_package(
        build_package(
            MODEL,
            OTHER,
            name="kws",
            version="1.2.4",
            sequence=11,
            security_counter=2,
            hardware_class=7,
            min_runtime_version=0,
        ),
        both,
    ).manifest.key_id == key_id(OTHER)


def test_signature_by_another_key_under_a_trusted_key_id() -> None:
    forged = mf.sign_body(PACKAGE[: mf.SIGNED_SIZE], OTHER) + MODEL
    with pytest.raises(errors.BadSignature):
        verify_package(forged, STORE)


def test_check_order_format_before_length_and_signature_before_ranges() -> None:
    v2 = bytearray(PACKAGE[:50])
    v2[4] = 2
    with pytest.raises(errors.UnsupportedFormat):
        mf.parse(bytes(v2), STORE)
    with pytest.raises(errors.Truncated):
        mf.parse(b"XXXX", STORE)  # length before magic
    flags = bytearray(PACKAGE)
    flags[mf.OFFSETS["flags"][0]] = 2  # bit 0 (encrypted) is allowed; bit 1 is not
    with pytest.raises(errors.BadSignature):
        verify_package(bytes(flags), STORE)
    resigned = mf.sign_body(bytes(flags[: mf.SIGNED_SIZE]), KEY) + MODEL
    with pytest.raises(errors.FieldOutOfRange, match="flags"):
        verify_package(resigned, STORE)


def resigned_with(field: str, value: int | bytes) -> bytes:
    off, size = mf.OFFSETS[field]
    raw = value if isinstance(value, bytes) else value.to_bytes(size, "little")
    body = PACKAGE[:off] + raw + PACKAGE[off + size : mf.SIGNED_SIZE]
    return mf.sign_body(body, KEY) + MODEL


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("reserved0", 1, "reserved"),
        ("reserved1", 1, "reserved"),
        ("flags", 2, "flags"),
        ("payload_encoding", 3, "payload_encoding"),
        ("model_name", bytes(32), "empty"),
        ("model_name", b"a" * 32, "NUL-terminated"),
        ("model_name", b"ab\0c".ljust(32, b"\0"), "NUL-padded"),
        ("model_name", b"\xff\xfe".ljust(32, b"\0"), "UTF-8"),
        ("payload_size", 0, "payload_size"),
        ("payload_size", (1 << 31) + 1, "payload_size"),
        ("model_size", len(MODEL) + 1, "raw payload"),
        ("model_sha256", bytes(32), "raw payload"),
        ("delta_base_sha256", b"\x01" * 32, "delta_base"),
        ("selftest_output_sha256", b"\x01" * 32, "selftest"),
        ("header_size", 300, "header_size"),
    ],
)
def test_each_range_rule(field: str, value: int | bytes, message: str) -> None:
    data = resigned_with(field, value)
    expected = errors.UnsupportedFormat if field == "header_size" else errors.FieldOutOfRange
    with pytest.raises(expected, match=message):
        verify_package(data, STORE)
    if expected is errors.FieldOutOfRange:
        assert message in (inspect(data).range_error or "")


def test_range_limits_that_are_allowed() -> None:
    long_name = make(name="é" * 15 + "x", sequence=0xFFFFFFFF, version="65535.65535.65535")
    m = verify_package(long_name, STORE).manifest
    assert m.model_name == "é" * 15 + "x" and m.sequence == 0xFFFFFFFF and m.version == (65535,) * 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "model_name"),
        ({"name": "x" * 32}, "model_name"),
        ({"name": "a\0b"}, "model_name"),
        ({"version": "1.2"}, "MAJOR.MINOR.PATCH"),
        ({"version": "1.2.70000"}, "at most"),
        ({"min_runtime_version": "0.256.0"}, "minor and patch"),
        ({"sequence": -1}, "does not fit"),
        ({"sequence": 1 << 32}, "does not fit"),
        ({"selftest_seed": 5}, "self-test"),
        ({"selftest_output_sha256": bytes(32)}, "seed"),
        ({"payload_encoding": 2, "payload": b"d"}, "delta_base"),
        ({"payload_encoding": 1}, "needs the encoded payload"),
    ],
)
def test_build_refuses_bad_fields(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(errors.FieldOutOfRange, match=message):
        make(**overrides)


def test_build_refuses_a_file_that_is_not_a_model() -> None:
    with pytest.raises(errors.InvalidModelError):
        build_package(
            b"not a model at all",
            KEY,
            name="x",
            version="1.0.0",
            sequence=1,
            security_counter=0,
            hardware_class=1,
            min_runtime_version=0,
        )


def test_compressed_and_delta_payloads_carry_their_own_digest() -> None:
    payload = b"\x01encoded-bytes"
    base = hashlib.sha256(b"old model").digest()
    delta = make(payload_encoding=mf.ENC_DELTA, payload=payload, delta_base_sha256=base)
    v = verify_package(delta, STORE)
    assert v.payload == payload and v.manifest.delta_base_sha256 == base
    assert v.manifest.model_sha256 == hashlib.sha256(MODEL).digest() and v.manifest.model_size == len(MODEL)
    comp = make(payload_encoding=mf.ENC_COMPRESSED, payload=payload)
    assert verify_package(comp, STORE).manifest.encoding_name == "compressed"


def test_selftest_input_is_xorshift32() -> None:
    s, expected = 1, bytearray()
    for _ in range(5):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        expected.append(s & 0xFF)
    assert selftest_input(1, 5) == bytes(expected)
    # Known first states of xorshift32 from seed 1: 270369, 67634689, ...
    assert selftest_input(1, 2) == bytes([270369 & 0xFF, 67634689 & 0xFF])
    with pytest.raises(ValueError):
        selftest_input(0, 4)


def test_semver_and_runtime_version_helpers() -> None:
    assert mf.parse_semver("1.2.3") == (1, 2, 3)
    assert mf.runtime_version_int("1.2.3") == 0x010203
    assert mf.runtime_version_str(0x010203) == "1.2.3"
    for bad in ("1.2", "a.b.c", "1.2.3.4", "-1.2.3", ""):
        with pytest.raises(ValueError):
            mf.parse_semver(bad)


def test_inspect_reports_without_trusting() -> None:
    tampered = bytearray(PACKAGE)
    tampered[-1] ^= 1
    result = inspect(bytes(tampered))
    assert result.manifest.model_name == "kws" and result.size_ok and not result.payload_digest_ok
    assert result.range_error is None
    with pytest.raises(errors.BadMagic):
        inspect(b"garbage-garbage")


def test_encode_writes_only_format_1() -> None:
    m = mf.parse(PACKAGE, STORE)
    with pytest.raises(errors.UnsupportedFormat):
        mf.encode(replace(m, format_version=2))
    with pytest.raises(errors.UnsupportedFormat):
        mf.encode(replace(m, header_size=300))
    with pytest.raises(errors.FieldOutOfRange):
        mf.encode(replace(m, version=(1, 2)))  # type: ignore[arg-type]
    with pytest.raises(errors.FieldOutOfRange):
        mf.encode(replace(m, key_id=b"short"))
