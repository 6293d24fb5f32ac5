"""Sensor data for simulated devices, shaped for the model a device runs.

A real board's application is built with its model and feeds it its sensor's data. The simulator does
the same from the model's input tensor (`DeviceRuntime.model_io`): the compression pipeline's bearing
vibration classifier (int8, VIBRATION_BINS inputs, one output per VIBRATION_CLASSES) gets spectral
features of a synthetic accelerometer window of a random bearing condition, quantized with the model's
own input scale and zero point; any other model gets random bytes filling its input tensor.
"""

from __future__ import annotations

import random

import numpy as np

from tinyfleet.device.runtime import TYPE_INT8, TensorSpec
from tinyfleet.ml.datasets import VIBRATION_BINS, VIBRATION_CLASSES, vibration_features, vibration_window


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


def vibration_input(inp: TensorSpec, rng: random.Random) -> tuple[int, bytes]:
    """(bearing condition, quantized features of one window in that condition)."""
    label = rng.randrange(len(VIBRATION_CLASSES))
    window = vibration_window(label, np.random.default_rng(rng.getrandbits(32)))
    return label, quantize(vibration_features(window), inp)


def sensor_input(inp: TensorSpec, out: TensorSpec, rng: random.Random) -> bytes:
    """One input tensor's bytes for the model with these input and output tensors."""
    if is_vibration_model(inp, out):
        return vibration_input(inp, rng)[1]
    return rng.randbytes(inp.nbytes)
