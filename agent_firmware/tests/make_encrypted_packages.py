#!/usr/bin/env python3
"""Generate tests/vectors/encrypted/: encrypted twins of golden packages for the runtime's encrypted
install path (tests/test_runtime_encrypted.c and tests/test_powercut_encrypted.c).

Each `<stem>.tfpkg` is tests/vectors/<stem>.tfpkg re-signed with `flags` bit 0 and its payload encrypted
(tinyfleet.signing.encryption.encrypt_package, the trusted test key), `<stem>.wrap` its 80-byte content
key wrap for the test device, `<stem>.key` the 32-byte content key. device.key / device.pub is the test
device's X25519 key pair, other.key a second device's private key. Deterministic (keys from fixed seeds):
re-running rewrites identical bytes.

    python agent_firmware/tests/make_encrypted_packages.py            # rewrite the files
    python agent_firmware/tests/make_encrypted_packages.py --check    # exit 1 if a file differs
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tinyfleet.signing import encryption as enc  # noqa: E402
from tinyfleet.signing import manifest as mf  # noqa: E402
from tinyfleet.signing.keys import private_key_from_seed  # noqa: E402

VECTORS = REPO / "tests" / "vectors"
OUT = VECTORS / "encrypted"
# good: raw, sequence 6 (test_powercut.c's); the others as in test_powercut_delta.c
STEMS = ("good", "delta_good", "compressed_good", "good_active")


def seeded(label: str) -> bytes:
    return hashlib.sha256(b"tinyfleet encrypted install vectors: " + label.encode()).digest()


def files() -> dict[str, bytes]:
    signer = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: trusted").digest())
    device = seeded("device")
    out = {"device.key": device, "device.pub": enc.public_key_of(device), "other.key": seeded("other device")}
    for stem in STEMS:
        content_key = seeded("content key " + stem)
        package = enc.encrypt_package((VECTORS / f"{stem}.tfpkg").read_bytes(), content_key, signer)
        wrap = enc.wrap_content_key_with(
            content_key, out["device.pub"], package[: mf.MANIFEST_SIZE], seeded("ephemeral " + stem)
        )
        out[f"{stem}.tfpkg"] = package
        out[f"{stem}.wrap"] = wrap
        out[f"{stem}.key"] = content_key
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    differ = []
    for name, data in files().items():
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                differ.append(name)
        else:
            path.write_bytes(data)
    if differ:
        print(f"differs from the generator: {', '.join(differ)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
