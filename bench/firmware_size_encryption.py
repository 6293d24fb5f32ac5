#!/usr/bin/env python3
"""Flash and static RAM that encrypted installs (docs/PROTOCOL.md section 6) add to the Cortex-M4 update
agent: builds `firmware.elf` twice, the default (TFA_NO_ENCRYPTION) and `make ENCRYPTION=1`
(build/mps2-an386-enc), and compares them per object with bench/firmware_size.py's linker-map reader
(only the input sections that survived `--gc-sections` count).

    .venv/bin/python bench/firmware_size_encryption.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from firmware_size import FLASH_AIM, REPO, Usage, parse_map

PORT = REPO / "agent_firmware" / "ports" / "mps2-an386"
BUILD = REPO / "agent_firmware" / "build"
BUILDS = {"default": (BUILD / "mps2-an386", []), "ENCRYPTION=1": (BUILD / "mps2-an386-enc", ["ENCRYPTION=1"])}


def measure(out: Path, flags: list[str]) -> dict[str, Usage]:
    proc = subprocess.run(["make", "-s", "-C", str(PORT), "all", *flags], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"firmware build failed:\n{proc.stdout}{proc.stderr}")
    return parse_map((out / "firmware.map").read_text())


def main() -> int:
    if shutil.which("arm-none-eabi-gcc") is None:
        print("arm-none-eabi-gcc not found: nothing to measure")
        return 0
    usage = {name: measure(out, flags) for name, (out, flags) in BUILDS.items()}
    base, enc = usage["default"], usage["ENCRYPTION=1"]
    print(f"{'object':<36} {'default':>8} {'ENCRYPTION=1':>13} {'delta':>7}")
    for name in sorted(set(base) | set(enc)):
        a, b = base.get(name, Usage()).flash, enc.get(name, Usage()).flash
        if a != b:
            print(f"{name:<36} {a:>8} {b:>13} {b - a:>+7}")
    totals = {k: (sum(u.flash for u in v.values()), sum(u.ram for u in v.values())) for k, v in usage.items()}
    (fa, ra), (fb, rb) = totals["default"], totals["ENCRYPTION=1"]
    print(f"{'flash total':<36} {fa:>8} {fb:>13} {fb - fa:>+7}")
    print(f"{'static RAM total':<36} {ra:>8} {rb:>13} {rb - ra:>+7}")
    for name, (flash, _) in totals.items():
        margin = FLASH_AIM - flash
        print(
            f"{name}: {flash} B flash, {'under' if margin >= 0 else 'OVER'} the 24 KiB aim by {abs(margin)} B"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
