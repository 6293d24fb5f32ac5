#!/usr/bin/env python3
"""The MLPerf-Tiny-shaped models of tests/support/tiny_models.py (issue 15) on the host: built (cached),
then with --host their arena and time per inference against TFLM.

    .venv/bin/python bench/tiny_models.py [--small] [--host]

The M4 figures: `bench/inference_m4.py --markdown --tiny`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.tiny_models import FULL, SMALL, ensure  # noqa: E402

# --- host figures: arena and time against TFLM ----------------------------------------------------


def host_table(paths: dict[str, Path]) -> None:
    """Arena and time per inference of the engine (host build: its default host kernels, and its
    reference kernels) against TFLM's Python interpreter, outputs checked identical first; timing as
    bench/engine.py (fastest of 7 interleaved batches)."""
    import subprocess

    from engine import loadavg, tflm_arena, time_per_call  # bench/engine.py
    from tflite_micro.python.tflite_micro import runtime

    from tinyfleet.device.engine import Engine

    subprocess.run(["make", "-s", "-C", str(REPO / "agent_firmware"), "host"], check=True)
    print(f"load average before: {loadavg()}")
    columns = ["model", "MACs", "engine us", "reference kernels us", "TFLM us", "ratio", "engine arena B"]
    print("| " + " | ".join([*columns, "TFLM arena B"]) + " |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, path in paths.items():
        model = path.read_bytes()
        engine, reference = Engine(model), Engine(model, kernels="reference")
        interp = runtime.Interpreter.from_bytes(model)
        info = engine.input_info(0)
        x = np.random.default_rng(0).integers(-128, 128, size=info.shape, dtype=np.int8)
        for runner in (engine, reference):
            runner.set_input(0, x)
            runner.invoke()
        interp.set_input(x, 0)
        interp.invoke()
        expect = np.ascontiguousarray(interp.get_output(0)).tobytes()
        assert engine.output_bytes(0) == expect and reference.output_bytes(0) == expect, name
        iterations = max(3, int(0.2 / max(time_per_call([interp.invoke], 1)[0], 1e-6)))
        ours, ref, theirs = time_per_call([engine.invoke, reference.invoke, interp.invoke], iterations)
        print(
            f"| {name} | {engine.mac_count:,} | {ours * 1e6:.1f} | {ref * 1e6:.1f} | {theirs * 1e6:.1f} | "
            f"{ours / theirs:.2f} | {engine.arena_used:,} | {tflm_arena(path):,} |"
        )
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    built = ensure(FULL + (SMALL if "--small" in sys.argv else []))
    for n, p in built.items():
        print(n, p, p.stat().st_size)
    if "--host" in sys.argv:
        sys.path.insert(0, str(REPO / "bench"))
        host_table(built)
