"""Keys: files, passphrases, key ids, trust store, and the C header the firmware compiles."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support.paths import REPO
from tinyfleet.signing import keys as keylib
from tinyfleet.signing.errors import KeyFileError


def test_key_id_is_sha256_prefix_of_raw_public_key() -> None:
    key = keylib.generate_private_key()
    raw = keylib.public_raw(key)
    assert len(raw) == 32
    assert keylib.key_id(key) == keylib.key_id(key.public_key()) == hashlib.sha256(raw).digest()[:8]
    with pytest.raises(ValueError):
        keylib.key_id(b"short")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    key = keylib.generate_private_key()
    pem, pub = keylib.save_keypair(tmp_path / "sub" / "release", key)
    assert pem.stat().st_mode & 0o777 == 0o600
    assert pub.read_text() == keylib.public_raw(key).hex() + "\n"
    assert keylib.public_raw(keylib.load_private_key(pem)) == keylib.public_raw(key)
    assert keylib.public_raw(keylib.load_public_key(pub)) == keylib.public_raw(key)
    with pytest.raises(KeyFileError, match="already exists"):
        keylib.save_keypair(tmp_path / "sub" / "release", key)


def test_passphrase_protected_key(tmp_path: Path) -> None:
    key = keylib.generate_private_key()
    pem, _ = keylib.save_keypair(tmp_path / "k", key, b"correct horse")
    assert b"ENCRYPTED" in pem.read_bytes()
    assert keylib.public_raw(keylib.load_private_key(pem, b"correct horse")) == keylib.public_raw(key)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        keylib.load_private_key(pem, b"wrong")
    with pytest.raises(KeyFileError, match="encrypted"):
        keylib.load_private_key(pem)
    plain, _ = keylib.save_keypair(tmp_path / "plain", key)
    with pytest.raises(KeyFileError, match="not encrypted"):
        keylib.load_private_key(plain, b"x")


def test_bad_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        keylib.load_private_key(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01 hello")
    with pytest.raises(KeyFileError):
        keylib.load_private_key(garbage)
    with pytest.raises(KeyFileError):
        keylib.load_public_key(garbage)
    with pytest.raises(KeyFileError):
        keylib.parse_public_key(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    from cryptography.hazmat.primitives.asymmetric import ec

    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        keylib.load_private_pem(ec_pem)


def test_public_key_accepts_pem_too() -> None:
    key = keylib.generate_private_key()
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert keylib.public_raw(keylib.parse_public_key(pem)) == keylib.public_raw(key)


def test_trust_store_lookup_and_rotation() -> None:
    old, new = keylib.generate_private_key(), keylib.generate_private_key()
    store = keylib.TrustStore([old])
    store.add(new.public_key())
    store.add(new)  # the same key twice is harmless
    assert len(store) == 2
    entry = store.get(keylib.key_id(new))
    assert entry is not None and entry.public_key == keylib.public_raw(new)
    assert entry.verify(new.sign(b"m"), b"m") and not entry.verify(old.sign(b"m"), b"m")
    assert store.get(bytes(8)) is None


def compile_header(header: str, tmp_path: Path, use: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "trust_store.h").write_text(header)
    body = (
        "uint32_t count(void) { return TFA_TRUSTED_KEYS_COUNT + tfa_trusted_keys[0].key_id[0]; }\n"
        if use
        else "int unused(void) { return 0; }\n"
    )
    (tmp_path / "use.c").write_text('#include <stdint.h>\n#include "trust_store.h"\n' + body)
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None
    return subprocess.run(
        [
            cc,
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wconversion",
            "-Wshadow",
            "-fsyntax-only",
            f"-I{REPO / 'agent_firmware/core/include'}",
            f"-I{tmp_path}",
            str(tmp_path / "use.c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
def test_exported_c_header_compiles(tmp_path: Path) -> None:
    keys = [keylib.generate_private_key() for _ in range(3)]
    header = keylib.export_c_header(keylib.TrustStore(keys))
    assert "#define TFA_TRUSTED_KEYS_COUNT 3u" in header
    for key in keys:
        raw = keylib.public_raw(key)
        assert ", ".join(f"0x{b:02x}" for b in raw[:16]) in header
        assert keylib.key_id(key).hex() in header
    for use in (True, False):
        result = compile_header(header, tmp_path, use)
        assert result.returncode == 0, result.stderr
    broken = compile_header(header.replace("};", "}"), tmp_path, True)  # the check can fail
    assert broken.returncode != 0


def test_export_refuses_bad_input() -> None:
    with pytest.raises(KeyFileError):
        keylib.export_c_header(keylib.TrustStore())
    with pytest.raises(ValueError):
        keylib.export_c_header(keylib.TrustStore([keylib.generate_private_key()]), array_name="1bad name")
