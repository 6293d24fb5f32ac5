"""What the Cortex-M4 benches share (bench/install_m4.py, delta_m4.py, crypto_m4.py, inference_m4.py):
the skip when QEMU or the arm toolchain is missing, QEMU mps2-an386 with `-icount shift=0` (every guest
instruction is 1 ns of virtual time, so SysTick ticks count instructions), bench images built from the
port's startup and board files with the firmware's flags, C arrays for data compiled into them, and the
markdown tables they print.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tinyfleet.sim.qemu import MACHINE, QEMU, missing_tools  # noqa: E402

PORT = ROOT / "agent_firmware" / "ports" / "mps2-an386"
CORE_SRC = ROOT / "agent_firmware" / "core" / "src"
ARCH = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
CFLAGS = [*ARCH, "-Os", "-std=c11", "-ffunction-sections", "-fdata-sections", "-ffreestanding", "-Wall",
          "-Wextra", "-Werror", "-DTFA_NO_ERROR_NAMES=1"]  # fmt: skip
ICOUNT = ["-icount", "shift=0"]  # 1 instruction = 1 ns of virtual time


def skipped() -> bool:
    """True (after printing why) when qemu-system-arm or arm-none-eabi-gcc is missing."""
    reason = missing_tools()
    if reason is not None:
        print(f"skipped: {reason}")
        return True
    return False


def c_array(name: str, data: bytes) -> str:
    body = ",".join(str(b) for b in data)
    return f"static const uint8_t {name}[] = {{{body}}};\n"


def build_image(
    tmp: Path,
    header: tuple[str, str],
    sources: Sequence[Path],
    elf_name: str,
    extra_cflags: Sequence[str] = (),
) -> Path:
    """Write header (file name, text) into tmp and link sources with the port's libc_small.c and linker
    script into tmp/elf_name. extra_cflags (e.g. -flto=auto) apply to sources, not to libc_small.o:
    its mem* must stay loops (see ports/mps2-an386/Makefile)."""
    (tmp / header[0]).write_text(header[1])
    elf = tmp / elf_name
    libc = tmp / "libc_small.o"
    inc = ["-I", str(ROOT / "agent_firmware" / "core" / "include"), "-I", str(PORT), "-I", str(tmp)]
    subprocess.run(["arm-none-eabi-gcc", *CFLAGS, *inc, "-fno-builtin", "-fno-tree-loop-distribute-patterns",
                    "-c", str(PORT / "libc_small.c"), "-o", str(libc)], check=True)  # fmt: skip
    subprocess.run(["arm-none-eabi-gcc", *CFLAGS, *extra_cflags, *inc, *map(str, sources), str(libc),
                    "--specs=nano.specs", "-nostartfiles", "-Wl,--gc-sections", f"-T{PORT / 'mps2_an386.ld'}",
                    "-o", str(elf)], check=True)  # fmt: skip
    return elf


def qemu_args(elf: Path) -> list[str]:
    """QEMU running elf with -icount shift=0, UART0 on stdout, nothing else attached."""
    return [QEMU, "-M", MACHINE, "-display", "none", "-monitor", "none", "-nodefaults", *ICOUNT,
            "-serial", "stdio", "-kernel", str(elf)]  # fmt: skip


def run_image(elf: Path, timeout: float = 60.0, extra_args: Sequence[str] = ()) -> list[str]:
    """The UART lines of a bench image up to its "BENCH END" line; exits with the lines when it ends
    without one. extra_args go to QEMU (e.g. an execution log)."""
    proc = subprocess.Popen([*qemu_args(elf), *extra_args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").strip())
            if lines[-1] == "BENCH END":
                break
    finally:
        proc.kill()
        proc.wait(timeout=timeout)
    if "BENCH END" not in lines:
        sys.exit("bench firmware did not finish:\n" + "\n".join(lines))
    return lines


def print_markdown(header: Sequence[str], align: str, rows: Iterable[Sequence[object]]) -> None:
    """A markdown table; align is its separator row (e.g. "|---|---:|")."""
    print("| " + " | ".join(header) + " |")
    print(align)
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")
