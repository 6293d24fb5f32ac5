"""Host benchmark of the C inference engine against the TFLM Python interpreter.

For each model in ../shared/models that the engine supports: time per inference (invoke only, same
random input over its type's range, outputs checked identical first; the fastest of 7 batches, the
engine's and TFLM's batches interleaved so that both see the same load), for the engine's default
kernels (the host kernels, kernels_*_host.c) and its reference kernels; the ratio engine/TFLM; arena
bytes of both (TFLM's figure: the RecordingMicroAllocator total printed by print_allocations()),
operator and MAC counts.
Then the geometric mean of the ratios over the models both run, and the load average before and after.

Usage: .venv/bin/python bench/engine.py [--iterations N] [--models DIR]
Prints a Markdown table (the one in docs/BENCHMARKS.md, section "Inference engine").
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tinyfleet.device.engine import Engine, EngineError  # noqa: E402

MODELS = ["hello_world_int8", "micro_speech_quantized", "person_detect", "keyword_scrambled_8bit"]


def tflm_arena(path: Path) -> int:
    code = (
        "import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
        "runtime.Interpreter.from_file(sys.argv[1]).print_allocations()\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    match = re.search(r"Arena allocation total (\d+) bytes", res.stdout + res.stderr)
    return int(match.group(1)) if match else -1


def time_per_call(fns: list[Callable[[], object]], iterations: int) -> list[float]:
    """Seconds per call of each function: the fastest of 7 batches (least disturbed by other load on the
    machine), one batch of each function per round so that all see the same load."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(7):
        for fn, times in zip(fns, samples, strict=True):
            start = time.perf_counter()
            for _ in range(iterations):
                fn()
            times.append((time.perf_counter() - start) / iterations)
    return [min(times) for times in samples]


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "unknown"


def host_table(paths: Sequence[Path], iterations: int = 0) -> None:
    """Build the host library, then print the table of the module docstring for the models at paths
    (named by file stem), the geometric mean of the ratios and the load average before and after;
    iterations: calls per batch (0: adaptive, about 0.2 s of TFLM per batch)."""
    from tflite_micro.python.tflite_micro import runtime

    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)
    load_before = loadavg()
    columns = ["model", "ops", "MACs", "engine us/inference", "reference kernels us", "TFLM us/inference"]
    columns += ["ratio", "reference ratio", "engine arena B", "TFLM arena B"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios: list[float] = []
    for path in paths:
        name = path.stem
        if not path.exists():
            print(f"| {name} | missing: {path} |")
            continue
        model = path.read_bytes()
        try:
            engine = Engine(model)
        except EngineError as err:
            print(f"| {name} | refused: {err} | | | | | | {tflm_arena(path)} |")
            continue
        reference = Engine(model, kernels="reference")
        interp = runtime.Interpreter.from_bytes(model)
        info = engine.input_info(0)
        bounds = np.iinfo(info.dtype)  # int8 inputs; keyword_scrambled_8bit's is int16
        x = np.random.default_rng(0).integers(bounds.min, bounds.max + 1, size=info.shape, dtype=info.dtype)
        for runner in (engine, reference):
            runner.set_input(0, x)
            runner.invoke()
        interp.set_input(x, 0)
        interp.invoke()
        expect = np.ascontiguousarray(interp.get_output(0)).tobytes()
        assert engine.output_bytes(0) == expect and reference.output_bytes(0) == expect, name
        calls = iterations or max(3, int(0.2 / max(time_per_call([interp.invoke], 1)[0], 1e-6)))
        ours, ref, theirs = time_per_call([engine.invoke, reference.invoke, interp.invoke], calls)
        ratios.append(ours / theirs)
        print(
            f"| {name} | {engine.op_count} | {engine.mac_count} | {ours * 1e6:.1f} | {ref * 1e6:.1f} | "
            f"{theirs * 1e6:.1f} | {ours / theirs:.2f} | {ref / theirs:.2f} | {engine.arena_used} | "
            f"{tflm_arena(path)} |"
        )
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"\ngeometric mean of the ratio engine/TFLM over {len(ratios)} models: {geo:.2f}")
    print(f"load average (1 min) before: {load_before}, after: {loadavg()}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=0, help="calls per batch (default: adaptive)")
    parser.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models")
    args = parser.parse_args()
    host_table([args.models / f"{name}.tflite" for name in MODELS], args.iterations)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
