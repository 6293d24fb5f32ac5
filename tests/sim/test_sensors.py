"""Simulated sensor data: the vibration classifier from the compression pipeline gets features it can
classify (quantized with its own input parameters); other models get random bytes of their input size."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.support.paths import REPO, VECTORS
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


def test_pooled_windows_take_the_same_draws_and_stay_classifiable() -> None:
    # The fleet's devices use the process's pool of windows (issue 12): each draw takes as much from the
    # device's seeded stream as a fresh window, and the real classifier still recognises the conditions.
    engine = Engine((REPO / "examples" / "vibration-1.0.0.tflite").read_bytes())
    inp, out = _specs(engine)
    assert sensors.is_vibration_model(inp, out)
    fresh, pooled = random.Random(11), random.Random(11)
    inputs = set()
    correct = 0
    runs = 200
    for _ in range(runs):
        label, _ = sensors.vibration_input(inp, fresh)
        pooled_label, data = sensors.pooled_vibration_input(inp, pooled)
        assert pooled_label == label
        inputs.add(data)
        engine.set_input(0, np.frombuffer(data, dtype=np.int8).reshape(inp.shape))
        engine.invoke()
        correct += int(np.argmax(engine.get_output()) == label)
    assert fresh.random() == pooled.random()  # both streams at the same place
    assert len(inputs) > runs // 2  # windows repeat only after POOL_PER_CLASS of one condition
    assert correct / runs > 0.6  # four classes: chance is 0.25
    # What a fleet's device calls takes the pool for this model.
    assert (
        sensors.pooled_input(inp, out, random.Random(1))
        == sensors.pooled_vibration_input(inp, random.Random(1))[1]
    )
