"""Differential sweep of the engine's issue-15 ops (SQUEEZE, SPLIT, STRIDED_SLICE, TANH, HARD_SWISH,
RESIZE_NEAREST_NEIGHBOR, TRANSPOSE_CONV) against TFLM on random int8 models.

Models come from tests/device/test_engine_ops_differential.py (`family-seed`, built by TensorFlow, cached
under build/engine-differential-ops/); each runs on random int8 inputs (the first two all -128 and all
127) in the engine and in TFLM's Python interpreter, elementwise families also on the whole int8 range;
with --arena every model's arena is checked against TFLM's recorded arena (a child process per model).

Usage: .venv/bin/python bench/engine_differential_ops.py [--per-family N] [--first-seed S] [--runs R]
       [--jobs J] [--arena]
Prints a Markdown table (docs/BENCHMARKS.md, "Engine differential testing: issue 15's new ops") and
every difference found.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.device.test_engine_differential import Difference, compare  # noqa: E402
from tests.device.test_engine_ops_differential import (  # noqa: E402
    ELEMENTWISE,
    FAMILIES,
    ensure_models,
    model_names,
    tflm_arena_bytes,
    whole_range_differs,
)
from tinyfleet.device.engine import Engine, EngineError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=100, help="models per op family")
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=100, help="random inputs per model")
    ap.add_argument("--jobs", type=int, default=2, help="TensorFlow processes building models")
    ap.add_argument("--arena", action="store_true", help="check each arena against TFLM's")
    args = ap.parse_args()

    names = model_names(args.per_family, args.first_seed)
    start = time.monotonic()
    cache = ensure_models(names, jobs=args.jobs)
    built = time.monotonic() - start
    models: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    over_arena: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    found: list[Difference] = []
    start = time.monotonic()
    for name in names:
        family = name.rsplit("-", 1)[0]
        path = cache / f"{name}.tflite"
        model = path.read_bytes()
        try:
            engine = Engine(model)
        except EngineError as e:
            refused[family] += 1
            print(f"refused {name}: {e}")
            continue
        ops.update(set(engine.op_names()))
        models[family] += 1
        diffs = compare(name, model, args.runs, seed=args.first_seed)
        if family in ELEMENTWISE:
            missed = whole_range_differs(model)
            if missed:
                diffs.append(Difference(name, -1, 0, len(missed), -1))
        bad[family] += bool(diffs)
        found.extend(diffs)
        if args.arena and engine.arena_used > tflm_arena_bytes(path):
            over_arena[family] += 1
            print(f"ARENA {name}: {engine.arena_used} > TFLM")
    compared = time.monotonic() - start

    print(f"\nmodels built/cached in {built:.0f} s, compared in {compared:.0f} s")
    print("| family | models | inputs | refused | models with a difference | arena above TFLM |")
    print("|---|---:|---:|---:|---:|---:|")
    for family in FAMILIES:
        arena = str(over_arena[family]) if args.arena else "not checked"
        row = [models[family], models[family] * args.runs, refused[family], bad[family]]
        print(f"| {family} | " + " | ".join(str(v) for v in row) + f" | {arena} |")
    print("\nops covered: " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))
    for d in found:
        print(f"DIFF {d.model} run {d.run} output {d.output}: {d.elements} elements, max |diff| {d.max_abs}")
    return 1 if found or sum(over_arena.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
