"""Generate svdf_a.tflite, svdf_b.tflite and svdf_expected.txt for agent_firmware/tests/test_engine_svdf.c:
two random SVDF models of tests/device/test_engine_ops_svdf.py (svdf-0: batch 3, two layers with int8
state; svdf-1: batch 2, two layers with int16 state) and the outputs of TFLM's Python interpreter over
six invocations in sequence (state carried), each input the self-test stream (PROTOCOL 1.2) of seed
1000 + run. Line format: `<model file> <run> <output bytes in hex>`.

    .venv/bin/python agent_firmware/tests/vectors/engine/make_svdf_models.py
"""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))

import numpy as np  # noqa: E402
from tflite_micro.python.tflite_micro import runtime  # noqa: E402

from tests.device.test_engine_ops_svdf import build_model  # noqa: E402
from tinyfleet.signing.selftest import selftest_input  # noqa: E402

MODELS = {"svdf_a.tflite": "svdf-0", "svdf_b.tflite": "svdf-1"}
RUNS = 6


def main():
    lines = []
    for file, name in MODELS.items():
        model = build_model(name)
        (HERE / file).write_bytes(model)
        interp = runtime.Interpreter.from_bytes(model)
        shape = interp.get_input_details(0)["shape"]
        for run in range(RUNS):
            x = np.frombuffer(selftest_input(1000 + run, int(np.prod(shape))), np.int8).reshape(shape)
            interp.set_input(x, 0)
            interp.invoke()
            lines.append(f"{file} {run} {interp.get_output(0).tobytes().hex()}")
    (HERE / "svdf_expected.txt").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(MODELS)} models and {len(lines)} expected outputs")


if __name__ == "__main__":
    main()
