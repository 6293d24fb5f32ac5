"""Ed25519 signing keys, key ids, the trust store, and its C export for the firmware.

Files:
- private key: PKCS#8 PEM, encrypted with a passphrase when one is given (`PREFIX.pem`);
- public key: one line of 64 lowercase hex digits, the raw 32-byte Ed25519 public key (`PREFIX.pub`).
  Hex rather than PEM because it is exactly what the device stores and easy to paste or diff;
  `load_public_key` also accepts a PEM SubjectPublicKeyInfo file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tinyfleet.signing.errors import KeyFileError

KEY_ID_SIZE = 8
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

_HEX_LINE = re.compile(r"^[0-9a-fA-F]{64}$")


def public_raw(key: Ed25519PublicKey | Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> bytes:
    """First 8 bytes of SHA-256 over the raw public key (docs/PROTOCOL.md section 1.3)."""
    raw = key if isinstance(key, bytes) else public_raw(key)
    if len(raw) != PUBLIC_KEY_SIZE:
        raise ValueError(f"a raw Ed25519 public key is {PUBLIC_KEY_SIZE} bytes, got {len(raw)}")
    return hashlib.sha256(raw).digest()[:KEY_ID_SIZE]


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    """A key from a fixed 32-byte seed: only for reproducible test vectors, never for releases."""
    return Ed25519PrivateKey.from_private_bytes(seed)


def private_pem(key: Ed25519PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def public_hex_line(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    return public_raw(key).hex() + "\n"


def save_keypair(
    prefix: str | Path, key: Ed25519PrivateKey, passphrase: bytes | None = None
) -> tuple[Path, Path]:
    """Write PREFIX.pem (private, mode 0600) and PREFIX.pub (public hex); refuse to overwrite."""
    pem_path = Path(f"{prefix}.pem")
    pub_path = Path(f"{prefix}.pub")
    for path in (pem_path, pub_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; refusing to overwrite a key")
    try:
        pem_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(pem_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem(key, passphrase))
        pub_path.write_text(public_hex_line(key), encoding="ascii")
    except OSError as exc:
        raise KeyFileError(f"cannot write key files at {prefix}: {exc.strerror or exc}") from None
    return pem_path, pub_path


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def load_private_pem(
    data: bytes, passphrase: bytes | None = None, *, source: str = "key"
) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        # cryptography raises TypeError for "encrypted but no password" and the reverse.
        if passphrase:
            raise KeyFileError(f"{source} is not encrypted; do not give a passphrase") from None
        raise KeyFileError(f"{source} is encrypted; give its passphrase") from None
    except ValueError:
        if passphrase:
            raise KeyFileError(f"{source}: wrong passphrase or not a PEM private key") from None
        raise KeyFileError(f"{source} is not a PEM private key") from None
    except Exception:  # cryptography's backend may raise its own errors on garbage
        raise KeyFileError(f"{source} is not a readable PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{source} is not an Ed25519 private key")
    return key


def load_private_key(path: str | Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    return load_private_pem(_read(path, "private key"), passphrase, source=str(path))


def parse_public_key(data: bytes, *, source: str = "public key") -> Ed25519PublicKey:
    """Accept a hex line (this library's format) or a PEM SubjectPublicKeyInfo."""
    text = data.strip()
    if _HEX_LINE.match(text.decode("ascii", errors="replace")):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode("ascii")))
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text)
        except Exception:
            raise KeyFileError(f"{source} is not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFileError(f"{source} is not an Ed25519 public key")
        return key
    raise KeyFileError(f"{source} is neither 64 hex digits nor a PEM public key")


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    return parse_public_key(_read(path, "public key"), source=str(path))


@dataclass(frozen=True)
class TrustedKey:
    """One public key a verifier (or a device's trust store) accepts, with its 8-byte key id."""

    key_id: bytes
    public_key: bytes  # raw 32 bytes

    @classmethod
    def from_hex(cls, key_id: str, public_key: str) -> TrustedKey:
        """From the hex pair a trust-store listing carries (key id, raw public key)."""
        kid, pub = bytes.fromhex(key_id), bytes.fromhex(public_key)
        if len(kid) != 8 or len(pub) != 32:
            raise ValueError("a trusted key is an 8-byte key id and a 32-byte Ed25519 public key")
        return cls(kid, pub)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class TrustStore:
    """Public keys a verifier accepts, looked up by key id; several at once allow key rotation."""

    def __init__(self, keys: Iterable[Ed25519PublicKey | Ed25519PrivateKey | bytes] = ()) -> None:
        self._keys: dict[bytes, TrustedKey] = {}
        for key in keys:
            self.add(key)

    def add(self, key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> TrustedKey:
        raw = key if isinstance(key, bytes) else public_raw(key)
        entry = TrustedKey(key_id(raw), raw)
        existing = self._keys.get(entry.key_id)
        if existing is not None and existing.public_key != raw:
            raise KeyFileError(f"two different keys share key id {entry.key_id.hex()}")
        self._keys[entry.key_id] = entry
        return entry

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> TrustStore:
        return cls(load_public_key(p) for p in paths)

    def get(self, kid: bytes) -> TrustedKey | None:
        return self._keys.get(bytes(kid))

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())


def _c_bytes(data: bytes) -> str:
    return ", ".join(f"0x{b:02x}" for b in data)


def export_c_header(store: TrustStore, *, array_name: str = "tfa_trusted_keys") -> str:
    """A C header defining `static const tfa_trusted_key_t <array_name>[]` and `<ARRAY_NAME>_COUNT`.

    The array is static const so the header can be included by one translation unit of the firmware;
    it is marked unused so that including it without using it does not fail -Werror builds.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", array_name):
        raise ValueError(f"not a C identifier: {array_name!r}")
    if len(store) == 0:
        raise KeyFileError("no public keys to export")
    guard = f"TINYFLEET_{array_name.upper()}_H"
    count = f"{array_name.upper()}_COUNT"
    lines = [
        "/* Trusted signing keys for the tinyfleet runtime (tfa_device_config_t.keys).",
        " * Generated by `tinyfleet keys export-c`; do not edit. docs/PROTOCOL.md section 1.3. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        '#include "tfa/runtime.h"',
        "",
        "#ifndef TFA_TRUST_STORE_UNUSED",
        "#if defined(__GNUC__)",
        "#define TFA_TRUST_STORE_UNUSED __attribute__((unused))",
        "#else",
        "#define TFA_TRUST_STORE_UNUSED",
        "#endif",
        "#endif",
        "",
        f"#define {count} {len(store)}u",
        "",
        f"static const tfa_trusted_key_t {array_name}[{count}] TFA_TRUST_STORE_UNUSED = {{",
    ]
    for entry in store:
        lines.append(f"    /* key id {entry.key_id.hex()} */")
        lines.append(f"    {{{{{_c_bytes(entry.key_id)}}},")
        pk = entry.public_key
        lines.append(f"     {{{_c_bytes(pk[:16])},")
        lines.append(f"      {_c_bytes(pk[16:])}}}}},")
    lines += ["};", "", f"#endif /* {guard} */", ""]
    return "\n".join(lines)
