"""Differential sweep of the engine's issue-15 ops (SQUEEZE, SPLIT, STRIDED_SLICE, TANH, HARD_SWISH,
RESIZE_NEAREST_NEIGHBOR, TRANSPOSE_CONV) against TFLM on random int8 models.

Models come from tests/support/engine_op_models.py (`family-seed`, built by TensorFlow, cached
under build/engine-differential-ops/); each runs on random int8 inputs (the first two all -128 and all
127) in the engine and in TFLM's Python interpreter, elementwise families also on the whole int8 range;
with --arena every model's arena is checked against TFLM's recorded arena (a child process per model).

SVDF models (tests/support/engine_svdf_models.py, written as flatbuffers, not converted) run their
inputs as one sequence, the state carried from each invocation to the next, then again after a reset of
both interpreters: --svdf N of them (0: none). int16/int32 QUANTIZE and int8 -> int16 SOFTMAX models
(tests/support/engine_quant16_models.py, flatbuffers too) run on random inputs over their input type's
range: --quant16 N of them.

Usage: .venv/bin/python bench/engine_differential_ops.py [--per-family N] [--first-seed S] [--runs R]
       [--jobs J] [--arena] [--svdf N] [--quant16 N]
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

from tests.support.engine_differential import Difference, compare  # noqa: E402
from tests.support.engine_op_models import (  # noqa: E402
    ELEMENTWISE,
    FAMILIES,
    ensure_models,
    model_names,
    whole_range_differs,
)
from tests.support.engine_quant16_models import build_model as build_quant16  # noqa: E402
from tests.support.engine_quant16_models import compare_typed  # noqa: E402
from tests.support.engine_quant16_models import model_names as quant16_names  # noqa: E402
from tests.support.engine_svdf_models import build_model as build_svdf  # noqa: E402
from tests.support.engine_svdf_models import compare_with_reset  # noqa: E402
from tests.support.engine_svdf_models import model_names as svdf_names  # noqa: E402
from tests.support.tflm_arena import tflm_arena_bytes  # noqa: E402
from tinyfleet.device.engine import Engine, EngineError  # noqa: E402


def svdf_sweep(count: int, first_seed: int, runs: int, arena: bool) -> tuple[list[str], list[Difference]]:
    """The SVDF family: table rows and differences."""
    import tempfile

    found: list[Difference] = []
    refused = over = 0
    names = svdf_names(count, first_seed)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model = build_svdf(name)
            try:
                engine = Engine(model)
            except EngineError as e:
                refused += 1
                print(f"refused {name}: {e}")
                continue
            diffs = compare_with_reset(name, model, runs, seed=first_seed)
            found.extend(diffs)
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(model)
            if arena and engine.arena_used > tflm_arena_bytes(path):
                over += 1
                print(f"ARENA {name}: {engine.arena_used} > TFLM")
    bad = len({d.model for d in found})
    print(f"svdf: {len(names)} models compared in {time.monotonic() - start:.0f} s")
    row = [len(names) - refused, (len(names) - refused) * 3 * runs, refused, bad]
    arena_cell = str(over) if arena else "not checked"
    return ["| svdf | " + " | ".join(str(v) for v in row) + f" | {arena_cell} |"], found


def quant16_sweep(count: int, first_seed: int, runs: int, arena: bool) -> tuple[list[str], list[Difference]]:
    """The int16/int32 QUANTIZE and int16 SOFTMAX family: table rows and differences (one per model
    that differs, counting its differing runs)."""
    import tempfile

    found: list[Difference] = []
    refused = over = 0
    names = quant16_names(count, first_seed)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model = build_quant16(name)
            try:
                engine = Engine(model)
            except EngineError as e:
                refused += 1
                print(f"refused {name}: {e}")
                continue
            differ = compare_typed(model, runs, seed=first_seed)
            if differ:
                found.append(Difference(name, -1, 0, differ, -1))
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(model)
            if arena and engine.arena_used > tflm_arena_bytes(path):
                over += 1
                print(f"ARENA {name}: {engine.arena_used} > TFLM")
    print(f"quant16: {len(names)} models compared in {time.monotonic() - start:.0f} s")
    row = [len(names) - refused, (len(names) - refused) * runs, refused, len(found)]
    arena_cell = str(over) if arena else "not checked"
    return ["| quant16 | " + " | ".join(str(v) for v in row) + f" | {arena_cell} |"], found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=100, help="models per op family")
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=100, help="random inputs per model")
    ap.add_argument("--jobs", type=int, default=2, help="TensorFlow processes building models")
    ap.add_argument("--arena", action="store_true", help="check each arena against TFLM's")
    ap.add_argument("--svdf", type=int, default=0, help="SVDF models (each a sequence of 3 x runs inputs)")
    ap.add_argument("--quant16", type=int, default=0, help="int16/int32 QUANTIZE, int16 SOFTMAX models")
    args = ap.parse_args()
    svdf_rows: list[str] = []
    svdf_found: list[Difference] = []
    if args.svdf:
        svdf_rows, svdf_found = svdf_sweep(args.svdf, args.first_seed, args.runs, args.arena)
    if args.quant16:
        rows, more = quant16_sweep(args.quant16, args.first_seed, args.runs, args.arena)
        svdf_rows += rows
        svdf_found += more

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
    for line in svdf_rows:
        print(line)
    found.extend(svdf_found)
    print("\nops covered: " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))
    for d in found:
        print(f"DIFF {d.model} run {d.run} output {d.output}: {d.elements} elements, max |diff| {d.max_abs}")
    return 1 if found or sum(over_arena.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
