"""Check an int8 `.tflite` on both interpreters a device could meet: TFLM and the tinyfleet engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Validation:
    inputs: int
    tflm_ok: bool
    engine_checked: bool
    engine_bit_exact: bool
    engine_error: str = ""
    arena_bytes: int = 0  # the tinyfleet engine's arena for this model

    def summary(self) -> str:
        if not self.engine_checked:
            return f"TFLM ran {self.inputs} inputs; tinyfleet engine: {self.engine_error}"
        verdict = "bit-exact with" if self.engine_bit_exact else "DIFFERS from"
        arena = f"engine arena {self.arena_bytes:,} bytes"
        return f"tinyfleet engine {verdict} TFLM on {self.inputs} random inputs ({arena})"


def random_inputs(model: bytes, count: int, seed: int = 0) -> np.ndarray:
    from tflite_micro import runtime

    detail = runtime.Interpreter.from_bytes(model).get_input_details(0)
    shape = tuple(int(d) for d in detail["shape"])
    info = np.iinfo(detail["dtype"])
    rng = np.random.default_rng(seed)
    return rng.integers(info.min, info.max + 1, size=(count, *shape)).astype(detail["dtype"])


def validate(model: bytes, count: int = 20) -> Validation:
    """Run `count` random inputs through TFLM and through the C engine and compare the raw outputs."""
    from tflite_micro import runtime

    inputs = random_inputs(model, count)
    interpreter = runtime.Interpreter.from_bytes(model)
    expected = []
    for row in inputs:
        interpreter.set_input(row, 0)
        interpreter.invoke()
        expected.append(np.array(interpreter.get_output(0)).tobytes())
    from tinyfleet.device import engine
    from tinyfleet.device.library import LibraryError

    try:
        runner = engine.Engine(model)
        outputs = []
        for row in inputs:
            runner.set_input(0, row)
            runner.invoke()
            outputs.append(runner.output_bytes(0))
    except LibraryError as exc:
        return Validation(count, True, False, False, f"not available ({exc})")
    except engine.EngineError as exc:
        return Validation(count, True, False, False, f"refused the model: {exc}")
    return Validation(count, True, True, outputs == expected, arena_bytes=runner.arena_used)
