"""Differential sweep of the C inference engine against TFLM on randomly generated int8 models.

Models come from tests/support/engine_differential.py (`family-seed`, built by TensorFlow, cached
under build/engine-differential/); each is run on random int8 inputs (the first two all -128 and all
127) by the engine and by TFLM's Python interpreter, and every output that differs is printed.

Usage: .venv/bin/python bench/engine_differential.py [--per-family N] [--first-seed S] [--runs R] [--jobs J]
       [--optimized]   (the optimized DSP kernels, their instructions emulated in C, instead of the
                        host library's default, the host kernels kernels_*_host.c)
Prints a Markdown table (section "Engine differential testing" in docs/BENCHMARKS.md) and the
differences found, one line each: model, input run, output, differing elements, largest difference.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.engine_differential import (  # noqa: E402
    FAMILIES,
    Difference,
    compare,
    ensure_models,
    model_names,
    runs_for,
)
from tinyfleet.device.engine import Engine, EngineError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=200, help="models per op family")
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=100, help="inputs per model (autoencoders: 6x)")
    ap.add_argument("--jobs", type=int, default=2, help="TensorFlow processes building models")
    ap.add_argument(
        "--optimized", action="store_true", help="run the engine's optimized (Cortex-M4 DSP) kernels"
    )
    args = ap.parse_args()

    names = model_names(args.per_family, args.first_seed)
    start = time.monotonic()
    cache = ensure_models(names, jobs=args.jobs)
    built = time.monotonic() - start
    models: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    inputs: Counter[str] = Counter()
    bad_models: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    found: list[Difference] = []
    start = time.monotonic()
    for name in names:
        family = name.rsplit("-", 1)[0]
        model = (cache / f"{name}.tflite").read_bytes()
        try:
            ops.update(set(Engine(model).op_names()))
        except EngineError as e:
            refused[family] += 1
            print(f"refused {name}: {e}")
            continue
        models[family] += 1
        runs = runs_for(name, args.runs)
        inputs[family] += runs
        diffs = compare(name, model, runs, seed=args.first_seed, optimized=args.optimized)
        bad_models[family] += bool(diffs)
        found.extend(diffs)
    compared = time.monotonic() - start

    print(f"\nmodels built/cached in {built:.0f} s, compared in {compared:.0f} s")
    print("| family | models | inputs | refused | models with a difference | differing outputs |")
    print("|---|---:|---:|---:|---:|---:|")
    for family in FAMILIES:
        outs = sum(1 for d in found if d.model.rsplit("-", 1)[0] == family)
        row = [models[family], inputs[family], refused[family], bad_models[family], outs]
        print(f"| {family} | " + " | ".join(str(v) for v in row) + " |")
    total = [sum(models.values()), sum(inputs.values()), sum(refused.values()), sum(bad_models.values())]
    print("| all | " + " | ".join(str(v) for v in total) + f" | {len(found)} |")
    print("\nops covered: " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))
    for d in found:
        print(f"DIFF {d.model} run {d.run} output {d.output}: {d.elements} elements, max |diff| {d.max_abs}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
