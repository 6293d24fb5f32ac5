"""tinyfleet.signing.encryption: RFC vectors for each primitive, the key wrap, encrypted packages."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.paths import VECTORS
from tinyfleet.signing import encryption as enc
from tinyfleet.signing import errors
from tinyfleet.signing import manifest as mf
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.keys import TrustStore, private_key_from_seed
from tinyfleet.signing.package import build_package, verify_package

h = bytes.fromhex

# RFC 7748 section 5.2 (scalar, u, output) and section 6.1 (Alice / Bob).
X25519_RFC = [
    (
        "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
        "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
    ),
    (
        "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
        "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
        "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
    ),
]
ALICE_PRIV = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUB = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIV = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUB = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
SUNSCREEN_CT = h(
    "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dabcd62b357"
    "1639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
    "5af90bbf74a35be6b40b8eedf2785e42874d"
)
KEY_00_1F = bytes(range(32))

MODEL = (VECTORS / "model.tflite").read_bytes()
SIGNER = private_key_from_seed(hashlib.sha256(b"test_encryption signer").digest())
STORE = TrustStore([SIGNER])


def package(**overrides: object) -> bytes:
    fields: dict[str, object] = {
        "name": "kws",
        "version": "1.2.3",
        "sequence": 41,
        "security_counter": 3,
        "hardware_class": 7,
        "min_runtime_version": "0.1.0",
        "created_at": 1_700_000_000,
    }
    fields.update(overrides)
    return build_package(MODEL, SIGNER, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("scalar", "u", "out"), X25519_RFC)
def test_x25519_rfc7748_section_5_2(scalar: str, u: str, out: str) -> None:
    assert enc.x25519(h(scalar), h(u)) == h(out)


def test_x25519_rfc7748_diffie_hellman() -> None:
    assert enc.public_key_of(ALICE_PRIV) == ALICE_PUB
    assert enc.public_key_of(BOB_PRIV) == BOB_PUB
    assert enc.x25519(ALICE_PRIV, BOB_PUB) == SHARED == enc.x25519(BOB_PRIV, ALICE_PUB)


def test_x25519_refuses_low_order_points() -> None:
    for u in (bytes(32), (1).to_bytes(32, "little")):
        with pytest.raises(enc.EncryptionError, match="zero"):
            enc.x25519(ALICE_PRIV, u)


def test_chacha20_rfc8439() -> None:
    # A.1 test vector 1: the all-zero key, nonce and counter give this key stream (our package mode).
    assert enc.chacha20_xor(bytes(32), bytes(64)) == h(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )
    # 2.3.2: the block function's serialized output for counter 1.
    assert enc.chacha20_xor(KEY_00_1F, bytes(64), h("000000090000004a00000000"), 1) == h(
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )
    # 2.4.2: encryption across two blocks and a partial third.
    nonce = h("000000000000004a00000000")
    assert enc.chacha20_xor(KEY_00_1F, SUNSCREEN, nonce, 1) == SUNSCREEN_CT
    assert enc.chacha20_xor(KEY_00_1F, SUNSCREEN_CT, nonce, 1) == SUNSCREEN


def test_chacha20_counter_is_the_block_offset() -> None:
    key = hashlib.sha256(b"k").digest()
    stream = enc.chacha20_xor(key, bytes(64 * 5))
    assert enc.chacha20_xor(key, bytes(64 * 2), counter=3) == stream[192:]
    with pytest.raises(enc.EncryptionError, match="2\\^32"):
        enc.chacha20_xor(key, bytes(65), counter=(1 << 32) - 1)
    with pytest.raises(enc.EncryptionError, match="32 bytes"):
        enc.chacha20_xor(bytes(16), b"x")


def test_hmac_sha256_rfc4231() -> None:
    cases = [
        (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (
            b"\xaa" * 131,
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        ),
    ]
    for key, data, mac in cases:
        assert enc.hmac_sha256(key, data) == h(mac)


def test_hkdf_sha256_rfc5869() -> None:
    ikm = b"\x0b" * 22
    assert enc.hkdf_sha256(bytes(range(13)), ikm, bytes(range(0xF0, 0xFA)), 42) == h(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    assert enc.hkdf_sha256(b"", ikm, b"", 42) == h(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def test_wrap_round_trip_and_layout() -> None:
    manifest = package()[: mf.MANIFEST_SIZE]
    private, public = enc.generate_device_keypair()
    assert enc.public_key_of(private) == public
    content_key = enc.new_content_key()
    assert len(content_key) == enc.CONTENT_KEY_SIZE and content_key != enc.new_content_key()
    wrap = enc.wrap_content_key(content_key, public, manifest)
    assert len(wrap) == enc.WRAP_SIZE
    assert enc.unwrap_content_key(wrap, private, manifest) == content_key
    # A fresh ephemeral key per wrap: two wraps of the same key differ.
    assert enc.wrap_content_key(content_key, public, manifest)[:32] != wrap[:32]


def test_wrap_matches_the_contract_step_by_step() -> None:
    manifest = package()[: mf.MANIFEST_SIZE]
    eph = hashlib.sha256(b"eph").digest()
    content_key = hashlib.sha256(b"content").digest()
    wrap = enc.wrap_content_key_with(content_key, BOB_PUB, manifest, eph)
    eph_pub = enc.public_key_of(eph)
    okm = enc.hkdf_sha256(eph_pub + BOB_PUB, enc.x25519(eph, BOB_PUB), b"tinyfleet content key v1", 64)
    wrapped = bytes(a ^ b for a, b in zip(content_key, okm[:32], strict=True))
    tag = enc.hmac_sha256(okm[32:], wrapped + hashlib.sha256(manifest).digest())[:16]
    assert wrap == eph_pub + wrapped + tag


def test_unwrap_refuses_every_altered_byte_other_device_and_other_manifest() -> None:
    manifest = package()[: mf.MANIFEST_SIZE]
    private, public = enc.generate_device_keypair()
    wrap = enc.wrap_content_key(enc.new_content_key(), public, manifest)
    for i in range(enc.WRAP_SIZE):
        bad = bytearray(wrap)
        bad[i] ^= 0x01
        with pytest.raises(enc.EncryptionError) as info:
            enc.unwrap_content_key(bytes(bad), private, manifest)
        assert isinstance(info.value, errors.PackageError)
        assert info.value.code == ErrorCode.KEY_UNWRAP
    other_private, _ = enc.generate_device_keypair()
    with pytest.raises(enc.EncryptionError, match="KEY_UNWRAP"):
        enc.unwrap_content_key(wrap, other_private, manifest)
    with pytest.raises(enc.EncryptionError, match="KEY_UNWRAP"):
        enc.unwrap_content_key(wrap, private, package(sequence=42)[: mf.MANIFEST_SIZE])
    zero_eph = bytes(32) + wrap[32:]
    with pytest.raises(enc.EncryptionError, match="zero"):
        enc.unwrap_content_key(zero_eph, private, manifest)


def test_bad_argument_sizes_are_one_line_errors() -> None:
    private, public = enc.generate_device_keypair()
    manifest = package()[: mf.MANIFEST_SIZE]
    with pytest.raises(enc.EncryptionError, match="content key must be 32 bytes, got 16"):
        enc.wrap_content_key(bytes(16), public, manifest)
    with pytest.raises(enc.EncryptionError, match="manifest must be 292 bytes"):
        enc.wrap_content_key(bytes(32), public, manifest[:228])
    with pytest.raises(enc.EncryptionError, match="wrap must be 80 bytes"):
        enc.unwrap_content_key(bytes(79), private, manifest)
    with pytest.raises(enc.EncryptionError, match="low order"):
        enc.wrap_content_key(bytes(32), bytes(32), manifest)
    assert isinstance(enc.EncryptionError("x"), ValueError)


@pytest.mark.parametrize("encoding", ["raw", "compressed"])
def test_encrypt_package_keeps_fields_and_verifies(encoding: str) -> None:
    if encoding == "raw":
        clear = package()
    else:
        from tinyfleet.signing.delta import encode

        clear = package(payload=encode(MODEL), payload_encoding=mf.ENC_COMPRESSED)
    key = enc.new_content_key()
    sealed = enc.encrypt_package(clear, key, SIGNER)
    verified = verify_package(sealed, STORE)  # signature, ranges and the ciphertext digest
    before = mf.parse(clear, STORE)
    assert verified.manifest.flags == enc.FLAG_ENCRYPTED == mf.FLAG_ENCRYPTED
    assert enc.is_encrypted(verified.manifest) and not enc.is_encrypted(before)
    assert replace(
        verified.manifest, flags=0, payload_sha256=before.payload_sha256, signature=bytes(64)
    ) == replace(before, signature=bytes(64))
    assert verified.payload != clear[mf.MANIFEST_SIZE :]
    assert verified.manifest.payload_sha256 == hashlib.sha256(verified.payload).digest()
    assert enc.decrypt_payload(sealed, key) == clear[mf.MANIFEST_SIZE :]
    assert enc.decrypt_payload(clear, key) == clear[mf.MANIFEST_SIZE :]
    with pytest.raises(enc.EncryptionError, match="already encrypted"):
        enc.encrypt_package(sealed, key, SIGNER)
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(errors.DigestMismatch):
        verify_package(bytes(tampered), STORE)


def test_encrypt_package_refuses_a_damaged_package() -> None:
    clear = bytearray(package())
    clear[-1] ^= 1
    with pytest.raises(enc.EncryptionError, match="payload does not match"):
        enc.encrypt_package(bytes(clear), enc.new_content_key(), SIGNER)
    with pytest.raises(enc.EncryptionError, match="not a valid package"):
        enc.encrypt_package(b"TFMF", enc.new_content_key(), SIGNER)


def test_manifest_flag_rules() -> None:
    clear = package()
    body = bytearray(clear[: mf.SIGNED_SIZE])
    body[mf.OFFSETS["flags"][0]] = 1
    # flag set, raw, payload digest == model digest: allowed (the rule is relaxed, not inverted)
    mf.parse(mf.sign_body(bytes(body), SIGNER), STORE)
    # flag set, raw, digest differs: allowed; size must still match the model
    off = mf.OFFSETS["payload_sha256"][0]
    body[off : off + 32] = bytes(32)
    mf.parse(mf.sign_body(bytes(body), SIGNER), STORE)
    size_off = mf.OFFSETS["payload_size"][0]
    body[size_off : size_off + 4] = (len(MODEL) + 1).to_bytes(4, "little")
    with pytest.raises(errors.FieldOutOfRange, match="raw payload"):
        mf.parse(mf.sign_body(bytes(body), SIGNER), STORE)
    # flag clear, digest differs: still refused
    body = bytearray(clear[: mf.SIGNED_SIZE])
    body[off : off + 32] = bytes(32)
    with pytest.raises(errors.FieldOutOfRange, match="raw payload"):
        mf.parse(mf.sign_body(bytes(body), SIGNER), STORE)
    for bad in (2, 3, 0x81):
        body = bytearray(clear[: mf.SIGNED_SIZE])
        body[mf.OFFSETS["flags"][0]] = bad
        with pytest.raises(errors.FieldOutOfRange, match="flags"):
            mf.parse(mf.sign_body(bytes(body), SIGNER), STORE)


def test_error_classes_take_the_new_codes() -> None:
    assert str(errors.KeyUnwrap("x")) == "KEY_UNWRAP (9): x"
    assert str(errors.NotEncrypted("x")) == "NOT_ENCRYPTED (43): x"
    assert issubclass(errors.NotEncrypted, errors.PolicyError)
    assert not issubclass(errors.KeyUnwrap, errors.PolicyError)
    assert issubclass(enc.KeyUnwrapError, errors.KeyUnwrap)


def test_cli_inspect_and_verify_say_encrypted(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from tinyfleet.signing.cli import sign_app
    from tinyfleet.signing.keys import public_hex_line

    app = typer.Typer()
    app.add_typer(sign_app, name="sign")
    sealed = tmp_path / "sealed.tfpkg"
    sealed.write_bytes(enc.encrypt_package(package(), enc.new_content_key(), SIGNER))
    trust = tmp_path / "trust.pub"
    trust.write_text(public_hex_line(SIGNER))
    runner = CliRunner()
    result = runner.invoke(app, ["sign", "inspect", str(sealed), "--json"])
    fields = json.loads(result.stdout)
    assert result.exit_code == 0 and fields["encrypted"] is True and fields["flags"] == 1
    assert fields["payload_digest_ok"] and fields["field_range_error"] is None
    assert "model_ops" not in fields and "model_error" not in fields  # ciphertext is not parsed as a model
    result = runner.invoke(app, ["sign", "verify", str(sealed), "--trust", str(trust)])
    assert result.exit_code == 0 and "payload encrypted" in result.stdout
