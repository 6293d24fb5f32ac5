#!/usr/bin/env python3
"""Flash and static RAM of the Cortex-M4 firmware (mps2-an386, -Os), per object file.

Builds `agent_firmware/build/mps2-an386/firmware.elf`, prints `arm-none-eabi-size`, then a breakdown
read from the linker map: only the input sections that survived `--gc-sections` are counted, so each
row is what that object really costs in the image. flash = .text + .rodata + .data initialisers;
RAM = .data + .bss (the stack is a separate, fixed reservation). firmware.elf is link-time optimized (LTO
merges most objects into one row), so the same sources are also built with `make LTO=0` for a row per object.

With QEMU available it also measures the firmware's peak stack use during real work: the device (keys
and config of tests/vectors/device.json) installs, activates, self-tests and confirms
`good_active.tfpkg` and refuses `bad_sig_body.tfpkg`; then the harness dumps the stack region. QEMU's
RAM starts zeroed and the stack is never loaded, so the lowest non-zero byte is the deepest write.

    .venv/bin/python bench/firmware_size.py [--markdown] [--no-build] [--no-stack]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "agent_firmware" / "build" / "mps2-an386"
ELF_NAMES = {"all": "firmware.elf", "engine": "firmware-engine.elf"}
FRAME_H = REPO / "agent_firmware" / "core" / "include" / "tfa" / "frame.h"
FLASH_AIM = 24 * 1024  # the update agent without the engine (issue 15)
LTO_LABEL = "(link-time optimized objects)"
NO_LTO_OUT = OUT.parent / "mps2-an386-nolto"  # `make LTO=0`: the per-object breakdown

FLASH_SECTIONS = {".text", ".ARM.exidx", ".rodata"}
DATA_SECTIONS = {".data"}
BSS_SECTIONS = {".bss"}
_INPUT = re.compile(r"^ (\S+)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s*(.*)$")
_OUTPUT = re.compile(r"^(\.\S+)\s+0x[0-9a-f]+\s+0x[0-9a-f]+")


@dataclass
class Usage:
    text: int = 0
    data: int = 0
    bss: int = 0

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss


def object_label(path: str) -> str:
    """`.../obj/core/src/sha256.o` -> `core/src/sha256.o`; library members keep their archive name."""
    if "/obj/" in path:
        return path.split("/obj/", 1)[1]
    if path.endswith(".ltrans.o"):  # a temporary name per link: what LTO made of the objects it took in
        return LTO_LABEL
    match = re.search(r"([^/]+\.a)\((.+)\)$", path)
    if match:
        return f"{match.group(1)}: {match.group(2)}"
    return Path(path).name


def parse_map(text: str) -> dict[str, Usage]:
    """Per-object sizes of the kept input sections, from a GNU ld map file."""
    usage: dict[str, Usage] = defaultdict(Usage)
    body = text.split("Linker script and memory map", 1)[-1]
    output = ""
    pending_name: str | None = None
    for line in body.splitlines():
        out_match = _OUTPUT.match(line)
        if out_match:
            output = out_match.group(1)
            continue
        if re.match(r"^\.\S+$", line):  # output section name alone, its address on the next line
            output = line.strip()
            continue
        if re.match(r"^ \S+$", line) and not line.strip().startswith("*"):
            pending_name = line.strip()  # long input section name, numbers on the next line
            continue
        match = _INPUT.match(line)
        if not match or (match.group(1) is None and pending_name is None):
            pending_name = None
            continue
        name = match.group(1) or pending_name or ""
        pending_name = None
        size = int(match.group(3), 16)
        if name == "*fill*":
            obj = "(alignment fill)"
        elif name.startswith("*"):
            continue
        else:
            obj = object_label(match.group(4).strip())
        if output in FLASH_SECTIONS:
            usage[obj].text += size
        elif output in DATA_SECTIONS:
            usage[obj].data += size
        elif output in BSS_SECTIONS:
            usage[obj].bss += size
    return {k: v for k, v in usage.items() if v.text or v.data or v.bss}


def io_buffer_bytes() -> tuple[int, str]:
    """Bytes of the UART frame buffers (decoder rx, reply body, encoded tx) from tfa/frame.h."""
    text = FRAME_H.read_text()
    max_body = int(re.search(r"#define TFA_FRAME_MAX_BODY (\d+)u", text).group(1))  # type: ignore[union-attr]
    crc = int(re.search(r"#define TFA_FRAME_CRC_SIZE (\d+)u", text).group(1))  # type: ignore[union-attr]
    decoded = max_body + crc
    encoded = max_body + crc + (max_body + crc) // 254 + 1 + 2
    return decoded + max_body + encoded, f"rx {decoded} + reply {max_body} + tx {encoded}"


def symbol_address(elf: Path, name: str) -> int:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise SystemExit(f"symbol {name} not in {elf}")


def symbol_size(elf: Path, name: str) -> int:
    """Size of a (possibly static) symbol, 0 if absent."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name:
            return int(parts[1], 16)
    return 0


def measure_stack_peak(elf: Path) -> int | None:
    """Deepest stack use (bytes) over an install + refusal + delta install session, or None without
    QEMU/vectors."""
    sys.path.insert(0, str(REPO))
    from tinyfleet.device import frames
    from tinyfleet.signing import delta as codec
    from tinyfleet.signing.keys import load_private_key
    from tinyfleet.signing.package import build_package
    from tinyfleet.sim.qemu import Provision, QemuDevice, missing_tools

    vectors = REPO / "tests" / "vectors"
    if missing_tools() is not None or not (vectors / "device.json").exists():
        return None
    device = json.loads((vectors / "device.json").read_text())
    public_key = bytes.fromhex((vectors / "key_trusted.pub").read_text().strip())
    provision = Provision([public_key], device["hardware_class"], device["ram_budget"], device["slot_size"])
    bottom, top = symbol_address(elf, "__stack_bottom"), symbol_address(elf, "__stack_top")
    with QemuDevice(provision, firmware=elf) as dev:
        dev.upload((vectors / "good_active.tfpkg").read_bytes(), 1024)
        for request in (frames.activate(), frames.selftest(), frames.confirm()):
            dev.call(request)
        refused = dev.request(frames.install_begin((vectors / "bad_sig_body.tfpkg").read_bytes()[:292]))
        if refused.error() is None:
            raise SystemExit("bad_sig_body.tfpkg was accepted: the session did not run as intended")
        # The same model again as a delta against itself: the payload decoder runs too.
        model = (vectors / "model.tflite").read_bytes()
        delta = build_package(
            model, load_private_key(vectors / "key_trusted.pem"), name="stack-probe", version="1.0.1",
            sequence=device["active_sequence"] + 1, security_counter=device["security_floor"],
            hardware_class=device["hardware_class"], min_runtime_version="0.1.0",
            payload=codec.encode(model, model), payload_encoding=codec.ENCODING_DELTA,
            delta_base_sha256=hashlib.sha256(model).digest(),
        )  # fmt: skip
        dev.upload(delta, 1024)
        for request in (frames.activate(), frames.selftest(), frames.confirm()):
            dev.call(request)
        dev.state()
        stack = dev.read_memory(bottom, top - bottom)
    used_from = next((i for i, byte in enumerate(stack) if byte != 0), len(stack))
    return len(stack) - used_from


ENCRYPTION_OBJECTS = ("x25519.o", "chacha20.o", "kdf.o", "key_wrap.o")


def encryption_flash(firmware_usage: dict[str, Usage]) -> None:
    """Flash of the payload encryption code (PROTOCOL 6), from the bench image that links it; the update
    agent links it only once its install path calls it (--gc-sections drops unreferenced code)."""
    build("bench")
    bench = parse_map((OUT / "bench.elf").with_suffix(".map").read_text())
    rows = {name: u for name, u in bench.items() if name.endswith(ENCRYPTION_OBJECTS)}
    linked = sum(u.flash for name, u in firmware_usage.items() if name.endswith(ENCRYPTION_OBJECTS))
    print("payload encryption code (bench.elf; SHA-256 and the field arithmetic are shared with Ed25519):")
    for name, u in sorted(rows.items()):
        print(f"  {name:<40} flash {u.flash:>6} B  static RAM {u.ram} B")
    print(f"  total: {sum(u.flash for u in rows.values())} B flash; in this firmware image: {linked} B")


def build(target: str, *make_args: str) -> None:
    proc = subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware" / "ports" / "mps2-an386"), target,
                           *make_args], capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"firmware build failed:\n{proc.stdout}{proc.stderr}")


def print_table(usage: dict[str, Usage], markdown: bool) -> Usage:
    """The per-object rows, largest first, and their total (returned)."""
    rows = sorted(usage.items(), key=lambda kv: (-kv[1].flash, kv[0]))
    total = Usage(sum(u.text for u in usage.values()), sum(u.data for u in usage.values()),
                  sum(u.bss for u in usage.values()))  # fmt: skip
    if markdown:
        print("| object | text+rodata | data | bss | flash | static RAM |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, u in rows:
            print(f"| `{name}` | {u.text} | {u.data} | {u.bss} | {u.flash} | {u.ram} |")
        print(
            f"| **total** | {total.text} | {total.data} | {total.bss} | **{total.flash}** | **{total.ram}** |"
        )
    else:
        print(f"{'object':<44} {'text':>7} {'data':>6} {'bss':>6} {'flash':>7} {'RAM':>6}")
        for name, u in rows:
            print(f"{name:<44} {u.text:>7} {u.data:>6} {u.bss:>6} {u.flash:>7} {u.ram:>6}")
        print(f"{'total':<44} {total.text:>7} {total.data:>6} {total.bss:>6} {total.flash:>7} {total.ram:>6}")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--no-build", action="store_true", help="use the existing build")
    parser.add_argument("--no-stack", action="store_true", help="skip the QEMU stack measurement")
    parser.add_argument(
        "--target", choices=sorted(ELF_NAMES), default="all", help="all: update agent; engine: with inference"
    )
    args = parser.parse_args()
    if shutil.which("arm-none-eabi-gcc") is None:
        print("arm-none-eabi-gcc not found: nothing to measure")
        return 0
    if not args.no_build:
        build(args.target)
    elf = OUT / ELF_NAMES[args.target]
    size = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True).stdout
    print(f"arm-none-eabi-size {elf.name}:")
    print(size.rstrip())
    print()

    usage = parse_map(elf.with_suffix(".map").read_text())
    total = print_table(usage, args.markdown)
    if LTO_LABEL in usage and not args.no_build:
        # LTO merges the objects: the same sources built and linked without it show what each one costs
        build(args.target, "LTO=0", f"OUT={NO_LTO_OUT}")
        print(f"\nper object without link-time optimization (make LTO=0 OUT={NO_LTO_OUT.name}):")
        print_table(parse_map((NO_LTO_OUT / elf.name).with_suffix(".map").read_text()), args.markdown)
    io_bytes, io_detail = io_buffer_bytes()
    print()
    print(f"flash: {total.flash} B ({total.flash / 1024:.1f} KiB)")
    if args.target == "all":
        margin = FLASH_AIM - total.flash
        print(f"  aim {FLASH_AIM} B (24 KiB): {'under' if margin >= 0 else 'OVER'} by {abs(margin)} B")
    print(f"static RAM: {total.ram} B, of which:")
    print(f"  UART frame buffers: {io_bytes} B ({io_detail})")
    rest = total.ram - io_bytes
    print(f"static RAM besides I/O buffers: {rest} B ({rest / 1024:.2f} KiB)")
    # Large work areas a port hands to the core, shown apart so the agent's own state is visible.
    for symbol, what in (
        ("prv_delta", "payload decoder workspace (tfa_delta_t)"),
        ("prv_arena", "tensor arena"),
    ):
        area = symbol_size(elf, symbol)
        if area:
            rest -= area
            print(f"  {what}: {area} B")
    print(f"static RAM besides I/O buffers and work areas: {rest} B ({rest / 1024:.2f} KiB)")
    print("stack: 8 KiB reserved by the linker script (not counted above)")
    if not args.no_build:
        encryption_flash(usage)
    peak = None if args.no_stack else measure_stack_peak(elf)
    if peak is not None:
        print(f"stack peak (QEMU, install + confirm + refused package + delta install): {peak} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
