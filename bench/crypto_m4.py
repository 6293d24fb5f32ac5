#!/usr/bin/env python3
"""Cortex-M4 instruction counts of the core's crypto (SHA-256, SHA-512, Ed25519 verify; X25519, content key
unwrap and ChaCha20 of the payload encryption, PROTOCOL section 6) under QEMU.

Method: the bench firmware (`make -C agent_firmware/ports/mps2-an386 bench`) times each operation with
SysTick and prints the tick counts on UART0. QEMU runs it with `-icount shift=0`: every guest instruction
advances virtual time by exactly 1 ns, and SysTick counts the 25 MHz core clock in virtual time, so one
tick is 40 instructions. The firmware measures that ratio itself with a loop of known length (the "calib"
line, 2 instructions per iteration), and the figures below are ticks x (instructions per tick).
These are *instructions executed* (what QEMU's icount counts), not cycles: a real M4 adds wait states
and multi-cycle instructions (UMULL/UMAAL are 1 cycle on M4, loads 2). Resolution: one tick (40 insns).
The digests printed by the firmware are checked against hashlib, the Ed25519 results against the
expected valid/invalid outcome, and the X25519 output, the unwrapped key and the ChaCha20 ciphertext
against tinyfleet.signing.encryption, so a wrong implementation cannot produce a table.

    .venv/bin/python bench/crypto_m4.py [--markdown]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from m4_common import print_markdown, run_image, skipped  # noqa: E402

from tinyfleet.signing import encryption as enc  # noqa: E402
from tinyfleet.sim.qemu import QEMU, build_firmware  # noqa: E402

_LINE = re.compile(r"^BENCH (\S+) (\d+) ticks=(\d+)(.*)$")


def bench_data(length: int) -> bytes:
    """The buffer the firmware hashes: byte i is (7 i + 3) mod 256 (bench_main.c)."""
    return bytes((i * 7 + 3) & 0xFF for i in range(length))


def check_encryption(name: str, size: int, rest: str) -> None:
    """The firmware's encryption results against the Python module (inputs as in bench_main.c)."""
    data = bench_data(16384)
    if name == "x25519":
        want = enc.x25519(data[:32], data[32:64])[:8].hex()
        got = re.search(r"out=(\S+)", rest)
        if not got or got.group(1) != want:
            sys.exit(f"x25519: firmware {got.group(1) if got else '?'} != Python {want}")
    elif name == "key_unwrap":
        wrap = re.search(r"wrap=([0-9a-f]+)", rest)
        key = re.search(r"key=([0-9a-f]+)", rest)
        assert wrap and key, rest
        opened = enc.unwrap_content_key(bytes.fromhex(wrap.group(1)), data[96:128], data[:292])
        if opened != data[64:96] or key.group(1) != opened[:8].hex():
            sys.exit("key_unwrap: the firmware's key differs from the Python unwrap")
    elif name == "chacha20":
        want = enc.chacha20_xor(data[:32], data[:size])[-8:].hex()
        got = re.search(r"tail=(\S+)", rest)
        if not got or got.group(1) != want:
            sys.exit(f"chacha20 {size}: firmware {got.group(1) if got else '?'} != Python {want}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    if skipped():
        return 0
    elf = build_firmware("bench")
    lines = run_image(elf, timeout=120.0)

    insns_per_tick = 0.0
    rows: list[tuple[str, int, int, str]] = []
    for line in lines:
        match = _LINE.match(line)
        if not match:
            continue
        name, size, ticks, rest = match.group(1), int(match.group(2)), int(match.group(3)), match.group(4)
        if name == "calib":
            insns_per_tick = size / ticks
            continue
        digest = re.search(r"digest=([0-9a-f]+)", rest)
        if digest:
            ref = hashlib.new(name, bench_data(size)).hexdigest()[: len(digest.group(1))]
            if digest.group(1) != ref:
                sys.exit(f"{name} of {size} bytes: firmware digest {digest.group(1)} != hashlib {ref}")
        result = re.search(r"result=(\w+)", rest)
        if result:
            expected = "invalid" if name.endswith("_bad") else "valid"
            if result.group(1) != expected:
                sys.exit(f"{name}: firmware says {result.group(1)}, expected {expected}")
        check_encryption(name, size, rest)
        stack_match = re.search(r"stack=(\d+)", rest)
        rows.append((name, size, ticks, f"{stack_match.group(1)} B" if stack_match else ""))
    if insns_per_tick <= 0:
        sys.exit("no calibration line from the bench firmware")

    print(
        f"QEMU {subprocess.run([QEMU, '--version'], capture_output=True, text=True).stdout.splitlines()[0]}"
    )
    print(f"calibration: {insns_per_tick:.3f} instructions per SysTick tick (-icount shift=0)")
    header = ("operation", "bytes", "instructions", "per KiB", "stack peak")
    table = []
    for name, size, ticks, stack_peak in rows:
        insns = round(ticks * insns_per_tick)
        per_kib = f"{insns * 1024 / size:,.0f}" if name.startswith(("sha", "chacha")) else ""
        table.append((name, str(size), f"{insns:,}", per_kib, stack_peak))
    if args.markdown:
        print_markdown(header, "|---|---:|---:|---:|---:|", table)
    else:
        print(f"{header[0]:<22} {header[1]:>6} {header[2]:>14} {header[3]:>10} {header[4]:>10}")
        for row in table:
            print(f"{row[0]:<22} {row[1]:>6} {row[2]:>14} {row[3]:>10} {row[4]:>10}")
    return 0


if __name__ == "__main__":
    if shutil.which("make") is None:
        sys.exit("make not found")
    raise SystemExit(main())
