#!/usr/bin/env python3
"""Exact Cortex-M4 instructions per function of one inference: QEMU's execution trace, not samples.

bench/inference_m4_profile.py samples the program counter over QMP; an inference of a few hundred
thousand instructions is over between two samples (keyword_scrambled_8bit: 99% of its samples land in
the idle loop). Here QEMU logs every translation block it translates (`-d in_asm`: its instructions)
and every one it executes (`-d exec,nochain`: chaining off, so each execution is logged), and each
execution adds its block's instruction count to the function around its address (`arm-none-eabi-nm`,
symbols with a size only). The install, trial self-test and I/O around the inferences are cancelled
by running the same session twice, with A and B inferences, and dividing the difference by B - A.
Instruction counts do not depend on the machine's load; the idle loop's do (under `-icount` it spins
while the host delivers the next frame: `Reset_Handler` in the LTO-linked image), so the per-inference
total printed includes some idle. The kernels' figures repeat to within a few instructions between runs
(not to the instruction: micro_speech's prv_dw_run 670,698 to 670,706 in four runs with the defaults);
the other lines (idle loop, UART handler, field arithmetic) by hundreds to thousands.

    .venv/bin/python bench/inference_m4_trace.py MODEL.tflite [--a 2] [--b 12] [--top 25]
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from inference_m4 import inference_session  # noqa: E402

from tinyfleet.sim.qemu import build_firmware, missing_tools  # noqa: E402

_TB = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")
_INSN = re.compile(r"^0x([0-9a-f]+):")


def sized_symbols(elf: Path) -> tuple[list[int], list[str]]:
    """Function starts and names, only symbols with a size (LTO leaves sizeless local labels inside
    functions, which would take their addresses)."""
    out = subprocess.run(
        ["arm-none-eabi-nm", "-n", "-S", str(elf)], capture_output=True, text=True, check=True
    )
    starts, names = [], []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tTwW":
            starts.append(int(parts[0], 16) & ~1)
            names.append(parts[3])
    return starts, names


def session(elf: Path, model_path: Path, inferences: int) -> collections.Counter[str]:
    """Instructions per function over one session: install, self-test, then `inferences` INFERs."""
    starts, names = sized_symbols(elf)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "exec.log"
        trace = ["-icount", "shift=0", "-d", "exec,nochain,in_asm", "-D", str(log)]
        with inference_session(elf, model_path, Path(tmp), trace, timeout=600) as (_, infer):
            for _ in range(inferences):
                infer()
        sizes: dict[int, int] = {}
        counts: collections.Counter[str] = collections.Counter()
        block, n = -1, 0
        with log.open(errors="replace") as fh:
            for line in fh:
                if line.startswith("IN:"):
                    block, n = -1, 0
                elif match := _INSN.match(line):
                    block = int(match.group(1), 16) if block < 0 else block
                    n += 1
                    sizes[block] = n
                elif match := _TB.match(line):
                    pc = int(match.group(1), 16)
                    i = bisect.bisect_right(starts, pc) - 1
                    counts[names[i] if i >= 0 else "?"] += sizes.get(pc, 0)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path)
    parser.add_argument("--elf", type=Path, help="firmware-engine.elf to run (default: build it)")
    parser.add_argument("--a", type=int, default=2, help="inferences of the first session")
    parser.add_argument("--b", type=int, default=12, help="inferences of the second session")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    reason = missing_tools()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    if args.b <= args.a:
        parser.error("--b must be above --a")
    elf = args.elf or build_firmware("engine")
    first, second = session(elf, args.model, args.a), session(elf, args.model, args.b)
    k = args.b - args.a
    per = {name: (second[name] - first[name]) / k for name in set(first) | set(second)}
    print(f"{args.model.name}: {sum(per.values()):,.0f} instructions per inference (INFER frame included)")
    for name, value in sorted(per.items(), key=lambda item: -item[1])[: args.top]:
        if abs(value) >= 1:
            print(f"{value:12,.0f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
