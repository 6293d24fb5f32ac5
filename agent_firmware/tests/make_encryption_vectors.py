#!/usr/bin/env python3
"""Generate vectors/encryption.txt: golden vectors of the payload encryption primitives, checked by the C
runtime (tests/test_encryption.c) and through the host library by tests/device/test_crypto_encryption.py.

Every line is `kind field...` in hex ("-" for empty); `#` starts a comment:
    x25519   scalar u out|zero                      (zero: the result is all zero, refused)
    chacha20 key nonce counter plaintext ciphertext (counter in decimal)
    hmac     key data mac
    hkdf     salt ikm info length okm               (length in decimal)
    unwrap   device_private device_public manifest wrap content_key|KEY_UNWRAP

RFC 7748, RFC 8439, RFC 4231 and RFC 5869 vectors come first (typed in from the RFCs, then checked against
`cryptography` before anything is written), then seeded random ones computed with
tinyfleet.signing.encryption, then tinyfleet key wraps (good ones, and refusals: each field altered, another
device, another manifest, low-order ephemeral keys). Deterministic: re-running rewrites identical bytes.

    python agent_firmware/tests/make_encryption_vectors.py            # rewrite the file
    python agent_firmware/tests/make_encryption_vectors.py --check    # exit 1 if the committed file differs
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tinyfleet.signing import encryption as enc  # noqa: E402
from tinyfleet.signing.keys import private_key_from_seed  # noqa: E402
from tinyfleet.signing.package import build_package  # noqa: E402

OUT = Path(__file__).resolve().parent / "vectors" / "encryption.txt"
SEED = 0x7F1EE718
P = 2**255 - 19

h = bytes.fromhex


def hx(data: bytes) -> str:
    return data.hex() if data else "-"


RFC_X25519 = [
    # RFC 7748 section 5.2
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
    # RFC 7748 section 6.1: Alice's and Bob's public keys, then their shared secret
    (
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        "09" + "00" * 31,
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    ),
    (
        "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        "09" + "00" * 31,
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    ),
    (
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
    ),
]

# u-coordinates of small order (and their non-canonical twins): X25519 gives zero for any scalar.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    h("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (P - 1).to_bytes(32, "little"),
    P.to_bytes(32, "little"),
    (P + 1).to_bytes(32, "little"),
]

SUNSCREEN = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    b"sunscreen would be it."
)
RFC_CHACHA = [
    # RFC 8439 A.1 test vector 1 (all zero), 2.3.2 (one block, counter 1), 2.4.2 (sunscreen)
    ("00" * 32, "00" * 12, 0, "00" * 64,
     "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
     "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"),
    (bytes(range(32)).hex(), "000000090000004a00000000", 1, "00" * 64,
     "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
     "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"),
    (bytes(range(32)).hex(), "000000000000004a00000000", 1, SUNSCREEN.hex(),
     "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0bf91b65c5524733ab8f593dabcd62b357"
     "1639d624e65152ab8f530c359f0861d807ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
     "5af90bbf74a35be6b40b8eedf2785e42874d"),
]  # fmt: skip

RFC_HMAC = [
    # RFC 4231 test cases 1, 2, 3, 6 and 7
    ("0b" * 20, b"Hi There".hex(), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe".hex(), b"what do ya want for nothing?".hex(),
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    ("aa" * 20, "dd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    ("aa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First".hex(),
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    ("aa" * 131,
     b"This is a test using a larger than block-size key and a larger than block-size data. The key needs "
     b"to be hashed before being used by the HMAC algorithm.".hex(),
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]  # fmt: skip

RFC_HKDF = [
    # RFC 5869 A.1, A.2 and A.3
    ("000102030405060708090a0b0c", "0b" * 22, "f0f1f2f3f4f5f6f7f8f9", 42,
     "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    (bytes(range(0x60, 0xB0)).hex(), bytes(range(0x50)).hex(), bytes(range(0xB0, 0x100)).hex(), 82,
     "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09"
     "da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"),
    ("", "0b" * 22, "", 42,
     "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
]  # fmt: skip


def x25519_lines(rng: random.Random) -> list[str]:
    lines = ["# X25519: RFC 7748 5.2 and 6.1"]
    for scalar, u, out in RFC_X25519:
        assert enc.x25519(h(scalar), h(u)) == h(out), f"RFC X25519 vector {scalar[:8]} disagrees"
        lines.append(f"x25519 {scalar} {u} {out}")
    lines.append("# X25519: random scalars and points (bit 255 of u set at random: ignored; some u >= p)")
    for i in range(200):
        scalar = rng.randbytes(32)
        if i % 4 == 0:
            u = enc.public_key_of(rng.randbytes(32))
        elif i % 4 == 1:
            u = (P + rng.randrange(1, 19)).to_bytes(32, "little")  # non-canonical, still defined
        else:
            u = rng.randbytes(32)
        try:
            out = enc.x25519(scalar, u).hex()
        except enc.EncryptionError:
            out = "zero"
        lines.append(f"x25519 {scalar.hex()} {u.hex()} {out}")
    lines.append("# X25519: low-order points give zero for every scalar")
    for u in LOW_ORDER:
        for _ in range(2):
            scalar = rng.randbytes(32)
            try:
                enc.x25519(scalar, u)
            except enc.EncryptionError:
                lines.append(f"x25519 {scalar.hex()} {u.hex()} zero")
                continue
            raise AssertionError(f"low-order point {u.hex()} did not give zero")
    return lines


def chacha_lines(rng: random.Random) -> list[str]:
    lines = ["# ChaCha20: RFC 8439 A.1 #1, 2.3.2, 2.4.2"]
    for key, nonce, counter, plain, cipher in RFC_CHACHA:
        assert enc.chacha20_xor(h(key), h(plain), h(nonce), counter) == h(cipher), "RFC ChaCha20 disagrees"
        lines.append(f"chacha20 {key} {nonce} {counter} {plain} {cipher}")
    lines.append("# ChaCha20: random keys, nonces, counters (some at the end of the counter range), lengths")
    for i in range(60):
        key, nonce = rng.randbytes(32), rng.randbytes(12)
        length = rng.choice([0, 1, 63, 64, 65, 127, 128, 129, rng.randrange(1, 700)])
        blocks = (length + 63) // 64
        counter = [0, rng.randrange(1 << 32), (1 << 32) - max(blocks, 1)][i % 3]
        counter = min(counter, (1 << 32) - max(blocks, 1))
        plain = rng.randbytes(length)
        cipher = enc.chacha20_xor(key, plain, nonce, counter)
        lines.append(f"chacha20 {key.hex()} {nonce.hex()} {counter} {hx(plain)} {hx(cipher)}")
    return lines


def mac_lines(rng: random.Random) -> list[str]:
    lines = ["# HMAC-SHA256: RFC 4231 cases 1, 2, 3, 6, 7"]
    for key, data, mac in RFC_HMAC:
        assert enc.hmac_sha256(h(key), h(data)) == h(mac), "RFC 4231 vector disagrees"
        lines.append(f"hmac {key} {data} {mac}")
    lines.append("# HMAC-SHA256: random keys (0..150 bytes: around the 64-byte block) and messages")
    for _ in range(40):
        key, data = rng.randbytes(rng.randrange(151)), rng.randbytes(rng.randrange(300))
        lines.append(f"hmac {hx(key)} {hx(data)} {enc.hmac_sha256(key, data).hex()}")
    lines.append("# HKDF-SHA256: RFC 5869 A.1, A.2, A.3")
    for salt, ikm, info, length, okm in RFC_HKDF:
        assert enc.hkdf_sha256(h(salt), h(ikm), h(info), length) == h(okm), "RFC 5869 vector disagrees"
        lines.append(f"hkdf {hx(h(salt))} {ikm} {hx(h(info))} {length} {okm}")
    lines.append("# HKDF-SHA256: random inputs, lengths 1..200")
    for _ in range(30):
        salt, ikm, info = (rng.randbytes(rng.randrange(n)) for n in (100, 80, 60))
        length = rng.randrange(1, 201)
        okm = enc.hkdf_sha256(salt, ikm, info, length)
        lines.append(f"hkdf {hx(salt)} {hx(ikm)} {hx(info)} {length} {okm.hex()}")
    return lines


def signed_manifest() -> bytes:
    model = (REPO / "tests" / "vectors" / "model.tflite").read_bytes()
    signer = private_key_from_seed(hashlib.sha256(b"make_encryption_vectors signer").digest())
    package = build_package(
        model, signer, name="enc-vectors", version="1.0.0", sequence=7, security_counter=1,
        hardware_class=1, min_runtime_version="0.1.0", created_at=1_767_225_600,
    )  # fmt: skip
    return enc.encrypt_package(package, bytes(range(32)), signer)[:292]


def unwrap_lines(rng: random.Random) -> list[str]:
    lines = ["# key unwrap (PROTOCOL 6): good wraps; the first manifests are real signed encrypted manifests"]
    real = signed_manifest()
    good: list[tuple[bytes, bytes, bytes, bytes, bytes]] = []
    for i in range(30):
        device = rng.randbytes(32)
        public = enc.public_key_of(device)
        manifest = real if i < 5 else rng.randbytes(292)
        content_key = rng.randbytes(32)
        wrap = enc.wrap_content_key_with(content_key, public, manifest, rng.randbytes(32))
        assert enc.unwrap_content_key(wrap, device, manifest) == content_key
        good.append((device, public, manifest, wrap, content_key))
        lines.append(
            f"unwrap {device.hex()} {public.hex()} {manifest.hex()} {wrap.hex()} {content_key.hex()}"
        )
    lines.append(
        "# key unwrap refused: a byte of the wrap or the manifest altered, another device, low-order eph"
    )
    for i, (device, public, manifest, wrap, _) in enumerate(good):
        cases: list[tuple[bytes, bytes, bytes, bytes]] = []
        for at in (rng.randrange(32), 32 + rng.randrange(32), 64 + rng.randrange(16)):
            bad = bytearray(wrap)
            bad[at] ^= 1 << rng.randrange(8)
            cases.append((device, public, manifest, bytes(bad)))
        bad_manifest = bytearray(manifest)
        bad_manifest[rng.randrange(292)] ^= 0x80
        cases.append((device, public, bytes(bad_manifest), wrap))
        other = rng.randbytes(32)
        cases.append((other, enc.public_key_of(other), manifest, wrap))
        cases.append((device, public, manifest, LOW_ORDER[i % len(LOW_ORDER)] + wrap[32:]))
        for dev, pub, man, wr in cases:
            try:
                enc.unwrap_content_key(wr, dev, man)
            except enc.EncryptionError:
                lines.append(f"unwrap {dev.hex()} {pub.hex()} {man.hex()} {wr.hex()} KEY_UNWRAP")
                continue
            raise AssertionError("an altered wrap opened")
    return lines


def all_lines() -> list[str]:
    rng = random.Random(SEED)
    return [
        "# generated by make_encryption_vectors.py: do not edit",
        *x25519_lines(rng),
        *chacha_lines(rng),
        *mac_lines(rng),
        *unwrap_lines(rng),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    args = parser.parse_args()
    text = "\n".join(all_lines()) + "\n"
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"stale generated file: {OUT.name}", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
