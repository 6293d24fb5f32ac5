"""ONNX -> int8 conversion: wall time and accuracy before (onnxruntime, float) and after (TFLM, int8)
for the two ONNX models the tests build (tests/support/onnx_models.py), each converted --runs times.
Wall time depends on the machine's load: note `uptime` with the figures.

    PYTHONPATH=. .venv/bin/python bench/onnx_convert.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.support import onnx_models
from tinyfleet.ml import onnx_pipeline, validate
from tinyfleet.ml.quiet import quiet_tensorflow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, quiet_tensorflow():
        for name, build in (
            ("conv (digits 8x8)", onnx_models.conv_net),
            ("mlp (vibration 32)", onnx_models.mlp),
        ):
            model, x, y = build()
            onnx_path, data_path = onnx_models.save(model, x, y, Path(tmp), name.split()[0])
            seconds = []
            for _ in range(args.runs):
                started = time.perf_counter()
                result = onnx_pipeline.compress_onnx(onnx_path, data_path)
                seconds.append(time.perf_counter() - started)
            check = validate.validate(result.tflite)
            rows.append((name, result, statistics.median(seconds), min(seconds), check.summary()))
    print("| model | ONNX bytes | int8 bytes | acc float (onnxruntime) | acc int8 (TFLM) | top-1 agree"
          " | convert s (median / min) | engine |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, r, median, best, summary in rows:
        print(f"| {name} | {r.before.size_bytes:,} | {r.after.size_bytes:,} | {r.before.accuracy:.1%}"
              f" | {r.after.accuracy:.1%} | {r.notes['top1_agreement']:.1%} | {median:.2f} / {best:.2f}"
              f" | {summary} |")  # fmt: skip


if __name__ == "__main__":
    main()
