#!/usr/bin/env python3
"""Where the Cortex-M4 spends an inference: a sampling profile of `firmware-engine.elf` under QEMU.

Installs one model like bench/inference_m4.py (signed with a bench key, self-tested against TFLM's
digest), then, while INFER runs, reads the program counter over QMP (`info registers`) as fast as the
monitor answers and maps each sample to the function around it (`arm-none-eabi-nm`). Under
`-icount shift=0` virtual time is instruction count, so the share of samples per function estimates its
share of the inference's instructions (statistical: a few thousand samples; QEMU stops the vCPU at a
translation-block boundary, so the PC is a block start).

    .venv/bin/python bench/inference_m4_profile.py [MODEL.tflite] [--elf PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import re
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from inference_m4 import MODELS_DIR, inference_session  # noqa: E402
from inference_m4_trace import sized_symbols  # noqa: E402
from m4_common import ICOUNT  # noqa: E402

from tinyfleet.sim.qemu import build_firmware, missing_tools  # noqa: E402

_PC = re.compile(r"R15=([0-9a-fA-F]{8})")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", default=str(MODELS_DIR / "person_detect.tflite"))
    parser.add_argument("--elf", help="firmware-engine.elf to run (default: build it)")
    parser.add_argument("--repeat", type=int, default=3, help="inferences sampled")
    args = parser.parse_args()
    reason = missing_tools()
    if reason is not None:
        print(f"skipped: {reason}")
        return 0
    elf = Path(args.elf) if args.elf else build_firmware("engine")
    starts, names = sized_symbols(elf)
    path = Path(args.model)
    counts: collections.Counter[str] = collections.Counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        inference_session(elf, path, Path(tmp), ICOUNT, timeout=300) as (dev, infer),
    ):

        def run(done: threading.Event) -> None:
            try:
                infer()
            finally:
                done.set()

        for _ in range(args.repeat):
            done = threading.Event()
            worker = threading.Thread(target=run, args=(done,))
            worker.start()
            while not done.is_set():
                text = str(dev._qmp("human-monitor-command", **{"command-line": "info registers"}))
                match = _PC.search(text)
                if match:
                    pc = int(match.group(1), 16)
                    i = bisect.bisect_right(starts, pc) - 1
                    counts[names[i] if i >= 0 else "?"] += 1
            worker.join()
    total = sum(counts.values())
    print(f"{path.name}: {total} samples over {args.repeat} inferences")
    for name, n in counts.most_common(25):
        print(f"{100 * n / total:6.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
