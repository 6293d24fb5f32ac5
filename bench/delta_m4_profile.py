"""Where the Cortex-M4 delta decoder spends its instructions: an exact per-function count for one stream.

Builds the bench image of bench/delta_m4.py with one stream, runs it under QEMU with
`-d in_asm,exec,nochain` (every translation block executed is logged, none chained), and charges each
execution with its block's instruction count to the function around it (`arm-none-eabi-nm`). Unlike
sampling this is exact (up to blocks QEMU retranslates), but slow: use it on the small pairs. The
image's own code (calibration loop, checksum in `main`) is listed but left out of the total.

    .venv/bin/python bench/delta_m4_profile.py [--pair hello_world|w16] [--full] [--versions 1,3,4,5]

--versions defaults to the encoder's default (as bench/delta_m4.py encodes); --blocks also lists the
hottest translation blocks (address ranges to read in `arm-none-eabi-objdump -d`).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import delta_m4  # noqa: E402
from delta import SHARED_PAIRS, pipeline_pairs  # noqa: E402
from m4_common import run_image  # noqa: E402

from tinyfleet.signing import delta  # noqa: E402
from tinyfleet.sim.qemu import missing_tools  # noqa: E402

INSN = re.compile(r"^0x([0-9a-f]{8}):")
TRACE = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
# the image's own code: calibration, checksum and report (the decoder's flash contract, prv_read and
# prv_program, is counted: bench/delta_m4.py's figures include it)
HARNESS = {"main", "prv_calib_loop", "prv_bench", "Reset_Handler", "board_init", "board_ticks",
           "board_uart_putc", "uart_puts", "uart_putu"}  # fmt: skip


def _pair(name: str) -> tuple[bytes, bytes]:
    if name == "w16":
        _, base, new = pipeline_pairs(16)[0]
        return base.read_bytes(), new.read_bytes()
    return (
        (SHARED_PAIRS / "hello_world_int8.1.tflite").read_bytes(),
        (SHARED_PAIRS / "hello_world_int8.2.tflite").read_bytes(),
    )


def _symbols(elf: Path) -> tuple[list[int], list[tuple[int, int, str]]]:
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True)
    syms = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            syms.append((int(parts[0], 16) & ~1, int(parts[1], 16), parts[3]))
    syms.sort()
    return [s[0] for s in syms], syms


def _profile(log: Path, elf: Path, blocks: collections.Counter[str]) -> collections.Counter[str]:
    sizes: dict[int, int] = {}
    runs: collections.Counter[int] = collections.Counter()
    start = None
    starts, syms = _symbols(elf)
    # nothing before the first decoder call counts: the start-up code clears .bss (the 8 KiB tfa_delta_t)
    # with the port's memset, which the decoder also calls
    begin = next(a for a, _, name in syms if name == "tfa_delta_begin")
    begun = False
    for line in log.read_text(errors="replace").splitlines():
        m = INSN.match(line)
        if m:
            if start is None:  # a block's first instruction (a block translated again: the last counts)
                start = int(m.group(1), 16)
                sizes[start] = 0
            sizes[start] += 1
            continue
        start = None
        t = TRACE.match(line)
        if t:
            pc = int(t.group(1), 16)
            begun = begun or pc == begin
            if begun:
                runs[pc] += 1
    per_fn: collections.Counter[str] = collections.Counter()
    for pc, count in runs.items():
        i = bisect.bisect_right(starts, pc) - 1
        name = syms[i][2] if i >= 0 and pc < syms[i][0] + syms[i][1] else hex(pc)
        per_fn[name] += count * sizes.get(pc, 0)
        blocks[f"{name} {pc:#x}+{sizes.get(pc, 0)}"] += count * sizes.get(pc, 0)
    return per_fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=("hello_world", "w16"), default="hello_world")
    ap.add_argument("--full", action="store_true", help="the new model against no base")
    ap.add_argument("--versions", help="format versions the encoder may choose from (default: encode's)")
    ap.add_argument("--blocks", type=int, default=0, help="also list this many of the hottest blocks")
    args = ap.parse_args()
    reason = missing_tools()
    if reason is not None:
        print(f"skipped: {reason}")
        return
    base, new = _pair(args.pair)
    base = b"" if args.full else base
    if args.versions:
        stream = delta.encode(new, base, versions=tuple(int(v) for v in args.versions.split(",")))
    else:
        stream = delta.encode(new, base)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        elf = delta_m4.build(tmp, delta_m4.streams_header([("s", base, stream, new)]))
        log = tmp / "qemu.log"
        lines = run_image(elf, extra_args=["-d", "in_asm,exec,nochain", "-D", str(log)])
        if not any(line.startswith("BENCH s ") and line.endswith(" ok=1") for line in lines):
            sys.exit("the M4 did not decode the model:\n" + "\n".join(lines))
        blocks: collections.Counter[str] = collections.Counter()
        per_fn = _profile(log, elf, blocks)
    total = sum(v for k, v in per_fn.items() if k not in HARNESS)
    label = args.pair + (" (full)" if args.full else "")
    print(f"{label}: format v{stream[2]}, {len(stream)} stream bytes, {len(new)} output bytes,")
    print(f"{total:,} decoder instructions = {total / len(new):.1f} per output byte")
    print("| function | instructions | per output byte |\n|---|---:|---:|")
    for name, count in per_fn.most_common():
        if name not in HARNESS and count * 200 >= total:  # functions above 0.5% of the total
            print(f"| {name} | {count:,} | {count / len(new):.1f} |")

    if args.blocks:
        print("| block (function, address+instructions) | instructions | per output byte |\n|---|---:|---:|")
        for name, count in blocks.most_common(args.blocks):
            print(f"| {name} | {count:,} | {count / len(new):.1f} |")


if __name__ == "__main__":
    main()
