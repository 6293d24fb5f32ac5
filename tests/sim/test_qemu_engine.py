"""The engine sources must build for the Cortex-M4 with the firmware's strict flags (no libm, no
malloc): compile every core/engine/*.c with arm-none-eabi-gcc and check the undefined symbols."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.paths import REPO

FW = REPO / "agent_firmware"
FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wconversion"]
FLAGS += ["-Wshadow", "-ffunction-sections", "-fdata-sections", "-ffreestanding"]
# Allowed external symbols: libgcc soft-float/long helpers and the C string functions.
ALLOWED_PREFIXES = ("__aeabi_", "mem", "tfa_")


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
def test_engine_builds_for_cortex_m4(tmp_path: Path) -> None:
    sources = sorted((FW / "core" / "engine").glob("*.c"))
    assert sources
    objects = []
    for src in sources:
        obj = tmp_path / f"{src.stem}.o"
        res = subprocess.run(
            ["arm-none-eabi-gcc", *FLAGS, f"-I{FW / 'core' / 'include'}", "-c", str(src), "-o", str(obj)],
            capture_output=True,
            text=True,
        )
        assert res.returncode == 0, res.stderr
        objects.append(str(obj))
    nm = subprocess.run(["arm-none-eabi-nm", "-u", *objects], capture_output=True, text=True, check=True)
    undefined = {line.split()[-1] for line in nm.stdout.splitlines() if line.strip().startswith("U ")}
    foreign = sorted(s for s in undefined if not s.startswith(ALLOWED_PREFIXES))
    assert not foreign, f"engine pulls in {foreign}"
