#!/usr/bin/env python3
"""Generate the committed crypto test vectors (tests/test_sha.c, tests/test_ed25519.c) and the Ed25519
base-point table compiled into the runtime (core/src/ge25519_base_table.c).

Deterministic (fixed seeds, and Ed25519 signing is deterministic), so re-running it reproduces the
committed files byte for byte. References: hashlib and `cryptography`; the edge cases and the table use
the small affine edwards25519 arithmetic below, which is itself checked against `cryptography` (public
keys derived here must equal the library's) before anything is written.

    python agent_firmware/tests/make_crypto_vectors.py            # rewrite the files
    python agent_firmware/tests/make_crypto_vectors.py --check    # exit 1 if a committed file differs
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

VECTOR_DIR = Path(__file__).resolve().parent / "vectors"
SHA_FILE = VECTOR_DIR / "sha_random.txt"
ED_FILE = VECTOR_DIR / "ed25519_random.txt"
RFC_FILE = VECTOR_DIR / "ed25519_rfc8032.txt"
EDGE_FILE = VECTOR_DIR / "ed25519_edge.txt"
BASE_TABLE_FILE = VECTOR_DIR.parent.parent / "core" / "src" / "ge25519_base_table.c"
GE_HEADER = BASE_TABLE_FILE.parent / "ge25519.h"
SHA_MAX_LEN = 300
ED_COUNT = 1000
ED_MAX_MSG = 256

# edwards25519 (RFC 8032 section 5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p), group order L.
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int]
IDENTITY: Point = (0, 1)

# RFC 8032 section 7.1: (name, secret key, public key, message, signature), all hex. The 1023-byte
# message of TEST 1024 is split in 64-character rows. Every row is re-derived with `cryptography`
# (public key and signature from the secret key) before it is written out.
RFC_TEST_1024_MSG = """
08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98
fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8
79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d
658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc
1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4fe
ba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e
06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbef
efd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec7
aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed1
85ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb2
d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24
554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f270
88d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc
2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b07
07e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128ba
b27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51a
ddd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429e
c96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb7
51fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c
42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8
ca61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34df
f7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08
d78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649
de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e4
88acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a3
2ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e
6aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5f
b93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b5
0d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1
369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380d
b2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c
0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d0
"""
RFC_VECTORS = [
    (
        "TEST_1",
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "TEST_2",
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "TEST_3",
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
    (
        "TEST_1024",
        "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
        "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
        "".join(RFC_TEST_1024_MSG.split()),
        "0aab4c900501b3e24d7cdf4663326a3a87df5e4843b2cbdb67cbf6e460fec350aa5371b1508f9f4528ecea23c436d94b5e8fcd4f681e30a6ac00a9704a188a03",
    ),
    (
        "TEST_SHA_abc",
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        hashlib.sha512(b"abc").hexdigest(),
        "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
    ),
]


def _public_raw(key: Ed25519PrivateKey) -> bytes:
    raw = serialization.Encoding.Raw
    return key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)


# --- affine edwards25519 arithmetic (slow, simple, only for generating data) ---------------------------


def edwards_add(a: Point, b: Point) -> Point:
    """Affine addition, complete on edwards25519 (RFC 8032 section 5.1.4 with Z = 1)."""
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return x3, y3


def scalar_mult(k: int, point: Point) -> Point:
    result = IDENTITY
    addend = point
    while k:
        if k & 1:
            result = edwards_add(result, addend)
        addend = edwards_add(addend, addend)
        k >>= 1
    return result


def decode_point(data: bytes) -> Point | None:
    """RFC 8032 section 5.1.3, strict: None for y >= p, no square root, or x = 0 with the sign bit."""
    y = int.from_bytes(data, "little") & ((1 << 255) - 1)
    sign = data[31] >> 7
    if y >= P:
        return None
    xx = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(xx, (P + 3) // 8, P)
    if x * x % P != xx:
        x = x * SQRT_M1 % P
    if x * x % P != xx:
        return None
    if x == 0 and sign:
        return None
    return (P - x, y) if (x & 1) != sign else (x, y)


def encode_point(point: Point) -> bytes:
    x, y = point
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _base_point() -> Point:
    """B: y = 4/5 with the even ("positive") x."""
    point = decode_point((4 * pow(5, P - 2, P) % P).to_bytes(32, "little"))
    if point is None:
        raise SystemExit("base point does not decode: broken field constants")
    return point


BASE = _base_point()


def _secret_scalar(seed: bytes) -> int:
    """RFC 8032 section 5.1.5: clamped low half of SHA-512(seed)."""
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return int.from_bytes(h, "little")


def _challenge(r_enc: bytes, a_enc: bytes, msg: bytes) -> int:
    return int.from_bytes(hashlib.sha512(r_enc + a_enc + msg).digest(), "little") % L


# --- vector files --------------------------------------------------------------------------------------


def sha_lines() -> list[str]:
    """One line per length 0..SHA_MAX_LEN: length, message hex, SHA-256 hex, SHA-512 hex ('-' = empty)."""
    rng = random.Random(0x5A256)
    lines = ["# len msg_hex sha256_hex sha512_hex ; generated by make_crypto_vectors.py (hashlib)"]
    for length in range(SHA_MAX_LEN + 1):
        msg = rng.randbytes(length)
        digests = f"{hashlib.sha256(msg).hexdigest()} {hashlib.sha512(msg).hexdigest()}"
        lines.append(f"{length} {msg.hex() or '-'} {digests}")
    return lines


def ed_lines() -> list[str]:
    """One line per signature: public key hex, signature hex, message hex ('-' for empty)."""
    rng = random.Random(0xED25519)
    lines = ["# pk_hex sig_hex msg_hex ; generated by make_crypto_vectors.py (cryptography)"]
    for _ in range(ED_COUNT):
        key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        msg = rng.randbytes(rng.randint(0, ED_MAX_MSG))
        lines.append(f"{_public_raw(key).hex()} {key.sign(msg).hex()} {msg.hex() or '-'}")
    return lines


def rfc_lines() -> list[str]:
    """RFC 8032 section 7.1 vectors as `name pk sig msg`, each first re-derived with `cryptography`."""
    lines = ["# name pk_hex sig_hex msg_hex ; RFC 8032 section 7.1, checked against cryptography"]
    for name, sk, pk, msg, sig in RFC_VECTORS:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(sk))
        if _public_raw(key).hex() != pk or key.sign(bytes.fromhex(msg)).hex() != sig:
            raise SystemExit(f"RFC 8032 {name}: transcription does not match cryptography")
        if encode_point(scalar_mult(_secret_scalar(bytes.fromhex(sk)), BASE)).hex() != pk:
            raise SystemExit(f"RFC 8032 {name}: local edwards25519 arithmetic disagrees")
        lines.append(f"{name} {pk} {sig} {msg or '-'}")
    return lines


def _small_order_points() -> list[Point]:
    """The 8 points of order dividing 8: [L]Q for points Q with a torsion component."""
    found = {IDENTITY}
    y = 2
    while len(found) < 8:
        q = decode_point(y.to_bytes(32, "little"))
        if q is not None:
            found.add(scalar_mult(L, q))
        y += 1
    return sorted(found)


def _non_square_y(start: int) -> int:
    y = start
    while decode_point(y.to_bytes(32, "little")) is not None:
        y += 1
    return y


def edge_lines() -> list[str]:
    """Cases a strict verifier must get right, as `expect name pk sig msg` (expect 1 = valid)."""
    seed = bytes(range(32))
    key = Ed25519PrivateKey.from_private_bytes(seed)
    a_scalar = _secret_scalar(seed)
    pk = _public_raw(key)
    if encode_point(scalar_mult(a_scalar, BASE)) != pk:
        raise SystemExit("local edwards25519 arithmetic disagrees with cryptography")
    msg = b"tinyfleet edge case"
    sig = key.sign(msg)
    s_int = int.from_bytes(sig[32:], "little")
    cases: list[tuple[int, str, bytes, bytes, bytes]] = [(1, "valid_reference", pk, sig, msg)]

    # Non-canonical S: S + L and S + 2L satisfy the group equation too, and plain junk above L.
    for label, s_bad in (("s_plus_l", s_int + L), ("s_plus_2l", s_int + 2 * L), ("s_equals_l", L)):
        cases.append((0, label, pk, sig[:32] + s_bad.to_bytes(32, "little"), msg))
    cases.append((0, "s_all_ones", pk, sig[:32] + b"\xff" * 32, msg))

    # Encodings with y >= p (for y < 19 the same point also has a canonical encoding y + p).
    for y_bad in (P, P + 1, P + 9, 2**255 - 1):
        for sign in (0, 1):
            enc = (y_bad | (sign << 255)).to_bytes(32, "little")
            cases.append((0, f"pk_y_ge_p_{y_bad - P}_sign{sign}", enc, sig, msg))
            cases.append((0, f"r_y_ge_p_{y_bad - P}_sign{sign}", pk, enc + sig[32:], msg))

    # y values that are not on the curve, and x = 0 with the sign bit set.
    for y_start in (2, 1000, 2**254):
        enc = _non_square_y(y_start).to_bytes(32, "little")
        cases.append((0, f"pk_not_on_curve_{y_start}", enc, sig, msg))
        cases.append((0, f"r_not_on_curve_{y_start}", pk, enc + sig[32:], msg))
    for label, y_zero_x in (("y_1", 1), ("y_minus_1", P - 1)):
        enc = (y_zero_x | (1 << 255)).to_bytes(32, "little")
        cases.append((0, f"pk_x0_sign_set_{label}", enc, sig, msg))

    # Small-order public keys with R = [s]B: [s]B - [k]A == R holds whenever [k]A is the identity,
    # so a cofactorless verifier without the small-order check would accept some of these for any
    # message. Strict verification rejects all of them.
    r_forged = encode_point(scalar_mult(12345, BASE))
    s_forged = (12345).to_bytes(32, "little")
    for i, torsion in enumerate(_small_order_points()):
        cases.append((0, f"pk_small_order_{i}", encode_point(torsion), r_forged + s_forged, msg))

    # R = identity with S = k*a: the equation holds exactly ([S]B - [k]A = O = R), rejected as small order.
    r_id = encode_point(IDENTITY)
    k = _challenge(r_id, pk, msg)
    cases.append((0, "r_identity_equation_holds", pk, r_id + (k * a_scalar % L).to_bytes(32, "little"), msg))
    # Control for the line above: the same construction with an honest R = [r]B is a valid signature.
    r_int = 987654321
    r_enc = encode_point(scalar_mult(r_int, BASE))
    k = _challenge(r_enc, pk, msg)
    s_valid = ((r_int + k * a_scalar) % L).to_bytes(32, "little")
    cases.append((1, "constructed_valid", pk, r_enc + s_valid, msg))

    lines = ["# expect(1=valid) name pk_hex sig_hex msg_hex ; generated by make_crypto_vectors.py"]
    for expect, name, pk_c, sig_c, msg_c in cases:
        lines.append(f"{expect} {name} {pk_c.hex()} {sig_c.hex()} {msg_c.hex() or '-'}")
    return lines


def base_table_lines() -> list[str]:
    """(2i+1)B for the wNAF window declared in ge25519.h, each as (y+x, y-x, 2dxy) encodings."""
    header = GE_HEADER.read_text()
    window = int(header.split("#define TFA_GE_BASE_WINDOW ")[1].split()[0])
    count = 1 << (window - 2)
    twice = edwards_add(BASE, BASE)
    point = BASE
    lines = [
        "/* Generated by agent_firmware/tests/make_crypto_vectors.py; do not edit. Odd multiples (2i+1)B",
        " * of the Ed25519 base point in niels form (y+x, y-x, 2dxy), canonical little-endian encodings;",
        f" * {count} entries for a width-{window} wNAF, {count * 96} bytes of flash. */",
        '#include "ge25519.h"',
        "",
        "const uint8_t tfa_ge_base_odd_multiples[TFA_GE_BASE_COUNT][3][32] = {",
    ]
    for i in range(count):
        x, y = point
        lines.append(f"    /* {2 * i + 1}B */")
        lines.append("    {")
        for value in ((y + x) % P, (y - x) % P, 2 * D * x * y % P):
            data = value.to_bytes(32, "little")
            first = ", ".join(f"0x{b:02X}" for b in data[:16])
            second = ", ".join(f"0x{b:02X}" for b in data[16:])
            lines.append(f"        {{{first},")
            lines.append(f"         {second}}},")
        lines.append("    },")
        point = edwards_add(point, twice)
    lines.append("};")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with committed files, write nothing")
    args = parser.parse_args()
    outputs = {
        SHA_FILE: sha_lines(),
        ED_FILE: ed_lines(),
        RFC_FILE: rfc_lines(),
        EDGE_FILE: edge_lines(),
        BASE_TABLE_FILE: base_table_lines(),
    }
    stale = []
    for path, lines in outputs.items():
        text = "\n".join(lines) + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            VECTOR_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("stale generated files: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
