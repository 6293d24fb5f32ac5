#!/usr/bin/env python3
"""Host speed of the runtime's crypto: Ed25519 verify and SHA-256/512 throughput.

Calls the host library (`agent_firmware/build/host/libtinyfleet_agent.so`, built -O2 by
`make -C agent_firmware host`) through ctypes; one call per verify or per 1 MiB buffer, so the ctypes
overhead (about a microsecond) is negligible. OpenSSL (through `cryptography` and hashlib) is timed
the same way on the same inputs, for scale only. Every C result is checked before it is timed. Reports
the best of --repeat runs.

    .venv/bin/python bench/crypto_host.py [--markdown] [--repeat 7]
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tinyfleet.device.library import LibraryError, load_library

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "agent_firmware"
MIB = 1 << 20


def best_seconds(fn: Callable[[], object], inner: int, repeat: int) -> float:
    """Fastest of `repeat` runs, as CPU time per call, each run timing `inner` calls. Process CPU time
    and the minimum because the development machine is shared: time slices lost to other processes do
    not count, and other load (cache, memory bandwidth) only ever adds time."""
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(inner):
            fn()
        runs.append((time.process_time() - start) / inner)
    return min(runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--repeat", type=int, default=7, help="runs per figure (best reported)")
    args = parser.parse_args()
    try:
        lib = load_library()  # built -O2 by make when missing or stale
    except LibraryError as exc:
        sys.exit(str(exc))
    lib.tfa_ed25519_verify.restype = ctypes.c_int

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    pk = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    msg = os.urandom(292)  # a manifest's signed part is 228 bytes; this rounds up to 3 SHA-512 blocks
    sig = key.sign(msg)
    # A flipped message bit: the signature still decodes, so the whole equation is computed and fails.
    bad_msg = bytes([msg[0] ^ 1]) + msg[1:]
    if (
        lib.tfa_ed25519_verify(sig, pk, msg, len(msg)) != 0
        or lib.tfa_ed25519_verify(sig, pk, bad_msg, len(msg)) == 0
    ):
        sys.exit("C verify gives wrong answers; not timing it")
    public = key.public_key()

    data = os.urandom(MIB)
    out = ctypes.create_string_buffer(64)
    for bits in (256, 512):
        getattr(lib, f"tfa_sha{bits}")(data, ctypes.c_size_t(MIB), out)
        if out.raw[: bits // 8] != hashlib.new(f"sha{bits}", data).digest():
            sys.exit(f"C SHA-{bits} disagrees with hashlib; not timing it")

    rows = []
    t = best_seconds(lambda: lib.tfa_ed25519_verify(sig, pk, msg, len(msg)), 200, args.repeat)
    t_bad = best_seconds(lambda: lib.tfa_ed25519_verify(sig, pk, bad_msg, len(msg)), 200, args.repeat)
    t_ossl = best_seconds(lambda: public.verify(sig, msg), 200, args.repeat)
    rows.append(("Ed25519 verify, valid (292-byte message)", f"{t * 1e6:.0f} µs", f"{t_ossl * 1e6:.0f} µs"))
    rows.append(("Ed25519 verify, invalid (message bit flipped)", f"{t_bad * 1e6:.0f} µs", ""))
    for bits in (256, 512):
        c_hash = getattr(lib, f"tfa_sha{bits}")
        name = f"sha{bits}"

        def run_c(c_hash: Callable[..., object] = c_hash) -> object:
            return c_hash(data, ctypes.c_size_t(MIB), out)

        def run_ref(name: str = name) -> object:
            return hashlib.new(name, data).digest()

        t = best_seconds(run_c, 5, args.repeat)
        t_ref = best_seconds(run_ref, 5, args.repeat)
        rows.append(
            (f"SHA-{bits}, 1 MiB", f"{t * 1e3:.2f} ms/MiB ({1 / t:.0f} MiB/s)", f"{t_ref * 1e3:.2f} ms/MiB")
        )

    cpu = platform.processor() or platform.machine()
    print(f"host: {cpu}, Python {platform.python_version()}, process CPU time, best of {args.repeat} runs")
    header = ("operation", "tinyfleet C (-O2)", "OpenSSL via Python")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|---|---:|---:|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in (header, *rows):
            print(f"{row[0]:<42} {row[1]:>28} {row[2]:>18}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
