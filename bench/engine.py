"""Host benchmark of the C inference engine against the TFLM Python interpreter.

For each model in ../shared/models that the engine supports: time per inference (invoke only, same
random int8 input, fastest of several batches), the ratio engine/TFLM, arena bytes of both (TFLM's
figure: the RecordingMicroAllocator total printed by print_allocations()), operator and MAC counts.

Usage: .venv/bin/python bench/engine.py [--iterations N] [--models DIR]
Prints a Markdown table (the one in docs/BENCHMARKS.md, section "Inference engine").
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
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


def time_per_call(fn: object, iterations: int) -> float:
    """Seconds per call: the fastest of 7 batches (least disturbed by other load on the machine)."""
    samples = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) / iterations)
    return min(samples)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=0, help="calls per batch (default: adaptive)")
    parser.add_argument("--models", type=Path, default=REPO.parent / "shared" / "models")
    args = parser.parse_args()
    from tflite_micro.python.tflite_micro import runtime

    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)
    columns = ["model", "ops", "MACs", "engine us/inference", "TFLM us/inference", "ratio"]
    columns += ["engine arena B", "TFLM arena B"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in MODELS:
        path = args.models / f"{name}.tflite"
        if not path.exists():
            print(f"| {name} | missing: {path} |")
            continue
        model = path.read_bytes()
        try:
            engine = Engine(model)
        except EngineError as err:
            print(f"| {name} | refused: {err} | | | | | | {tflm_arena(path)} |")
            continue
        interp = runtime.Interpreter.from_bytes(model)
        info = engine.input_info(0)
        x = np.random.default_rng(0).integers(-128, 128, size=info.shape, dtype=np.int8)
        engine.set_input(0, x)
        interp.set_input(x, 0)
        engine.invoke()
        interp.invoke()
        assert engine.output_bytes(0) == np.ascontiguousarray(interp.get_output(0)).tobytes()
        iterations = args.iterations or max(3, int(0.2 / max(time_per_call(interp.invoke, 1), 1e-6)))
        ours = time_per_call(engine.invoke, iterations)
        theirs = time_per_call(interp.invoke, iterations)
        print(
            f"| {name} | {engine.op_count} | {engine.mac_count} | {ours * 1e6:.1f} | {theirs * 1e6:.1f} | "
            f"{ours / theirs:.2f} | {engine.arena_used} | {tflm_arena(path)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
