"""The simulated devices' input mix (profiles.InputMix): the class mix and its drift decide which
bearing conditions the sensor sees, and the real classifier's top-1 histogram follows them."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from tests.support.paths import REPO
from tinyfleet.device.engine import Engine
from tinyfleet.device.runtime import TYPE_INT8, TensorSpec
from tinyfleet.sim import sensors
from tinyfleet.sim.profiles import InputMix, get_profile

MODEL = REPO / "examples" / "vibration-1.0.0.tflite"  # the demo's int8 vibration classifier


def test_weights_follow_the_mix_and_drift_linearly():
    assert InputMix().weights_at(0, 4) == [0.25] * 4
    mix = InputMix(class_weights=(3, 1, 0, 0), drift_to=(0, 0, 0, 1), drift_seconds=100)
    assert mix.weights_at(0, 4) == [0.75, 0.25, 0.0, 0.0]
    assert mix.weights_at(50, 4) == pytest.approx([0.375, 0.125, 0.0, 0.5])
    assert mix.weights_at(1000, 4) == [0.0, 0.0, 0.0, 1.0]  # drift ends at its target
    assert InputMix(class_weights=(1, 1)).weights_at(0, 4) == [0.5, 0.5, 0.0, 0.0]


@pytest.mark.parametrize(
    "bad",
    [
        {"class_weights": (-1, 1)},
        {"class_weights": (0, 0)},
        {"noise": -0.1},
        {"drift_to": (1, 0)},  # no drift_seconds
        {"class_weights": (1, 1, 1), "drift_to": (1, 0), "drift_seconds": 10},
    ],
)
def test_bad_mixes_are_refused(bad):
    with pytest.raises(ValueError):
        get_profile("lan").with_inputs(**bad).validate()


def _classify(mix: InputMix, elapsed: float, runs: int, seed: int) -> tuple[Counter[int], Counter[int]]:
    """(labels drawn, top-1 classes) over `runs` windows through the real engine."""
    engine = Engine(MODEL.read_bytes())
    info = engine.input_info()
    out = engine.output_info()
    inp = TensorSpec(TYPE_INT8, info.shape, info.nbytes, info.scale, info.zero_point)
    assert sensors.is_vibration_model(inp, TensorSpec(TYPE_INT8, out.shape, out.nbytes, out.scale, 0))
    rng = random.Random(seed)
    labels: Counter[int] = Counter()
    top1: Counter[int] = Counter()
    for _ in range(runs):
        label, data = sensors.vibration_input(inp, rng, mix, elapsed)
        engine.set_input(0, np.frombuffer(data, dtype=np.int8).reshape(inp.shape))
        engine.invoke()
        labels[label] += 1
        top1[int(np.argmax(engine.get_output()))] += 1
    return labels, top1


def test_the_class_histogram_follows_the_mix_and_its_drift():
    mix = InputMix(class_weights=(0.7, 0.1, 0.1, 0.1), drift_to=(0.1, 0.1, 0.1, 0.7), drift_seconds=3600)
    labels, top1 = _classify(mix, 0, 200, seed=1)
    assert labels.most_common(1)[0][0] == 0 and top1.most_common(1)[0][0] == 0
    assert top1[0] / 200 > 0.5  # 70 % drawn; the classifier is right about 9 times in 10
    labels, top1 = _classify(mix, 3600, 200, seed=2)  # drifted: mostly ball faults
    assert labels.most_common(1)[0][0] == 3 and top1.most_common(1)[0][0] == 3
    assert top1[3] / 200 > 0.5


def test_noise_makes_the_classifier_less_accurate():
    def accuracy(noise: float) -> float:
        engine = Engine(MODEL.read_bytes())
        info = engine.input_info()
        inp = TensorSpec(TYPE_INT8, info.shape, info.nbytes, info.scale, info.zero_point)
        rng = random.Random(5)
        hits = 0
        for _ in range(150):
            label, data = sensors.vibration_input(inp, rng, InputMix(noise=noise))
            engine.set_input(0, np.frombuffer(data, dtype=np.int8).reshape(inp.shape))
            engine.invoke()
            hits += int(np.argmax(engine.get_output()) == label)
        return hits / 150

    assert accuracy(4.0) < accuracy(0.0) - 0.1
