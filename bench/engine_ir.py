"""Instructions per inference of the C engine on the host, per kernel set, counted by callgrind.

Wall-clock figures on a shared machine swing with its load; instruction counts do not. For each shared
model: bench/engine_invoke.c (built here against the host library) runs it under
`valgrind --tool=callgrind --toggle-collect=tfa_engine_invoke`, so only the invokes are counted, and
the total is divided by the number of invokes. Kernel sets: reference (the oracle), dsp (the Cortex-M4
kernels with their instructions emulated in C) and host (the default, kernels_*_host.c). The output
hash of every set must be the same.

Usage: .venv/bin/python bench/engine_ir.py [--runs N] [--models DIR]
Prints a Markdown table (docs/BENCHMARKS.md, section "Inference engine").
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "agent_firmware"
MODELS = ["hello_world_int8", "micro_speech_quantized", "person_detect"]
KERNELS = {"reference": 0, "dsp": 1, "host": 2}


def build(out: Path) -> Path:
    subprocess.run(["make", "-s", "-C", str(FIRMWARE), "host"], check=True)
    lib = FIRMWARE / "build" / "host"
    exe = out / "engine_invoke"
    cmd = [
        "cc",
        "-O2",
        "-std=c11",
        f"-I{FIRMWARE / 'core' / 'include'}",
        str(REPO / "bench" / "engine_invoke.c"),
    ]
    cmd += ["-o", str(exe), f"-L{lib}", "-ltinyfleet_agent", f"-Wl,-rpath,{lib}"]
    subprocess.run(cmd, check=True)
    return exe


def instructions(exe: Path, model: Path, kernels: int, runs: int, out: Path) -> tuple[int, str]:
    """(instructions per invoke, output hash)."""
    profile = out / f"callgrind.{model.stem}.{kernels}"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={profile}",
        "--toggle-collect=tfa_engine_invoke",
    ]
    res = subprocess.run(
        [*cmd, str(exe), str(model), str(kernels), str(runs)], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise SystemExit(f"{model.name}: {res.stderr.strip().splitlines()[-1:]}")
    match = re.search(r"^summary: (\d+)", profile.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{profile}: no summary line")
    return int(match.group(1)) // runs, res.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="invokes per model and kernel set")
    parser.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("skipped: valgrind is not installed")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        exe = build(out)
        print(
            "| model | "
            + " | ".join(f"{k} instructions / inference" for k in KERNELS)
            + " | reference / host |"
        )
        print("|---|" + "---:|" * (len(KERNELS) + 1))
        for name in MODELS:
            path = args.models / f"{name}.tflite"
            if not path.exists():
                print(f"| {name} | missing: {path} |")
                continue
            counts = {k: instructions(exe, path, v, args.runs, out) for k, v in KERNELS.items()}
            if len({h for _, h in counts.values()}) != 1:
                raise SystemExit(f"{name}: kernel sets give different outputs: {counts}")
            cells = " | ".join(f"{n:,}" for n, _ in counts.values())
            print(f"| {name} | {cells} | {counts['reference'][0] / counts['host'][0]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
