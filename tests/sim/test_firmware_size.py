"""The update agent's flash budget (issue 15): the default Cortex-M4 firmware without the engine
(`build/mps2-an386/firmware.elf`) stays within 24 KiB, and the link-time optimization that keeps it
there leaves the QEMU harness's breakpoint targets in place. A size budget, measured on the ELF the port's
Makefile builds (incremental make), not a timing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tinyfleet.sim.qemu import FLASH_OP_SYMBOLS, build_firmware, firmware_symbol

FLASH_AIM = 24 * 1024  # bench/firmware_size.py, docs/BENCHMARKS.md "Firmware size"

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None or shutil.which("arm-none-eabi-size") is None,
    reason="the Arm GNU toolchain (arm-none-eabi-gcc, arm-none-eabi-size) is not installed",
)


@pytest.fixture(scope="module")
def firmware() -> Path:
    return build_firmware("all")


def flash_bytes(elf: Path) -> int:
    """Flash of an image: `size`'s text (code, rodata, exidx) plus data (its initialisers live in flash)."""
    out = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True, check=True).stdout
    text, data = out.splitlines()[1].split()[:2]
    return int(text) + int(data)


def test_the_update_firmware_fits_its_flash_aim(firmware: Path) -> None:
    flash = flash_bytes(firmware)
    assert flash <= FLASH_AIM, f"firmware.elf needs {flash} B of flash, {flash - FLASH_AIM} B over 24 KiB"


def test_the_harness_breakpoint_targets_survive_link_time_optimization(firmware: Path) -> None:
    # tinyfleet/sim/qemu.py cuts the power at these by name: LTO must not rename or inline them away
    addresses = {name: firmware_symbol(firmware, name) for name in FLASH_OP_SYMBOLS}
    assert len(set(addresses.values())) == len(FLASH_OP_SYMBOLS)
    assert all(address > 0 for address in addresses.values())
