"""Simulated sensor data: the vibration classifier from the compression pipeline gets features it can
classify (quantized with its own input parameters); other models get random bytes of their input size."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.support.paths import VECTORS
from tinyfleet.demo_models import pipeline_available, pipeline_models
from tinyfleet.device.engine import Engine
from tinyfleet.device.runtime import TYPE_INT8, TensorSpec
from tinyfleet.sim import sensors

VECTOR_MODEL = VECTORS / "model.tflite"


def _specs(engine: Engine) -> tuple[TensorSpec, TensorSpec]:
    out = []
    for info in (engine.input_info(), engine.output_info()):
        kind = TYPE_INT8 if info.dtype is np.int8 else 0
        out.append(TensorSpec(kind, info.shape, info.nbytes, info.scale, info.zero_point))
    return out[0], out[1]


def test_other_models_get_random_bytes_of_their_input_size() -> None:
    inp, out = _specs(Engine(VECTOR_MODEL.read_bytes()))
    assert not sensors.is_vibration_model(inp, out)
    data = sensors.sensor_input(inp, out, random.Random(1))
    assert len(data) == inp.nbytes


def test_quantize_uses_the_input_parameters_and_saturates() -> None:
    spec = TensorSpec(TYPE_INT8, (1, 3), 3, 0.5, -10)
    assert sensors.quantize(np.array([0.0, 1.0, 1000.0]), spec) == bytes([0xF6, 0xF8, 0x7F])


@pytest.mark.timeout(120)
def test_the_vibration_classifier_recognises_the_simulated_bearings() -> None:
    if not pipeline_available():
        pytest.skip("TensorFlow unavailable: no pipeline models")
    engine = Engine(pipeline_models()[0])
    inp, out = _specs(engine)
    assert sensors.is_vibration_model(inp, out)
    rng = random.Random(3)
    correct = 0
    runs = 200
    for _ in range(runs):
        label, data = sensors.vibration_input(inp, rng)
        engine.set_input(0, np.frombuffer(data, dtype=np.int8).reshape(inp.shape))
        engine.invoke()
        correct += int(np.argmax(engine.get_output()) == label)
    assert correct / runs > 0.6  # four classes: chance is 0.25; the pipeline measured about 0.88
