"""Sensor data for simulated devices, shaped for the model a device runs.

A real board's application is built with its model and feeds it its sensor's data. The simulator does
the same from the model's input tensor (`DeviceRuntime.model_io`): the compression pipeline's bearing
vibration classifier (int8, VIBRATION_BINS inputs, one output per VIBRATION_CLASSES) gets spectral
features of a synthetic accelerometer window of a random bearing condition, quantized with the model's
own input scale and zero point; any other model gets random bytes filling its input tensor. The
profile's InputMix sets how often each bearing condition occurs, extra noise, and a drift over time.
"""

from __future__ import annotations

import random

import numpy as np

from tinyfleet.device.runtime import TYPE_INT8, TensorSpec
from tinyfleet.ml.datasets import VIBRATION_BINS, VIBRATION_CLASSES, vibration_features, vibration_window
from tinyfleet.sim.profiles import InputMix

WINDOW_NOISE = 0.5  # the standard deviation of vibration_window's own noise; InputMix.noise scales it


def is_vibration_model(inp: TensorSpec, out: TensorSpec) -> bool:
    return (
        inp.type == TYPE_INT8
        and inp.nbytes == VIBRATION_BINS
        and inp.scale > 0
        and out.nbytes == len(VIBRATION_CLASSES)
    )


def quantize(values: np.ndarray, spec: TensorSpec) -> bytes:
    q = np.clip(np.round(values / spec.scale) + spec.zero_point, -128, 127).astype(np.int8)
    return q.tobytes()


def vibration_input(
    inp: TensorSpec, rng: random.Random, mix: InputMix | None = None, elapsed: float = 0.0
) -> tuple[int, bytes]:
    """(bearing condition, quantized features of one window in that condition), the condition drawn from
    the mix as it stands `elapsed` seconds into the device's run."""
    mix = mix or InputMix()
    classes = len(VIBRATION_CLASSES)
    if mix.uniform:
        label = rng.randrange(classes)  # the draw of earlier versions: seeded fleets replay the same
    else:
        label = rng.choices(range(classes), mix.weights_at(elapsed, classes))[0]
    np_rng = np.random.default_rng(rng.getrandbits(32))
    window = vibration_window(label, np_rng)
    if mix.noise > 0:
        window = window + np_rng.normal(0.0, WINDOW_NOISE * mix.noise, len(window)).astype(np.float32)
    return label, quantize(vibration_features(window), inp)


def sensor_input(
    inp: TensorSpec, out: TensorSpec, rng: random.Random, mix: InputMix | None = None, elapsed: float = 0.0
) -> bytes:
    """One input tensor's bytes for the model with these input and output tensors."""
    if is_vibration_model(inp, out):
        return vibration_input(inp, rng, mix, elapsed)[1]
    return rng.randbytes(inp.nbytes)
