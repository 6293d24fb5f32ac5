"""Sensor data for simulated devices, shaped for the model a device runs.

A real board's application is built with its model and feeds it its sensor's data. The simulator does
the same from the model's input tensor (`DeviceRuntime.model_io`): the compression pipeline's bearing
vibration classifier (int8, VIBRATION_BINS inputs, one output per VIBRATION_CLASSES) gets spectral
features of a synthetic accelerometer window of a random bearing condition, quantized with the model's
own input scale and zero point; any other model gets random bytes filling its input tensor. The
profile's InputMix sets how often each bearing condition occurs, extra noise, and a drift over time.

A fleet uses `pooled_input`: synthesising and transforming a window costs about five times the
inference it feeds (issue 12: a quarter of a fleet worker's CPU), so each process synthesises a pool of
windows per condition once and devices draw from it. The condition is still drawn per inference from
the device's mix and the inference on the device's runtime is still real; only the noise of the input
repeats, after POOL_PER_CLASS windows of one condition.
"""

from __future__ import annotations

import random

import numpy as np

from tinyfleet.device.runtime import TYPE_INT8, TensorSpec
from tinyfleet.ml.datasets import VIBRATION_BINS, VIBRATION_CLASSES, vibration_features, vibration_window
from tinyfleet.sim.profiles import InputMix

WINDOW_NOISE = 0.5  # the standard deviation of vibration_window's own noise; InputMix.noise scales it
POOL_PER_CLASS = 128  # distinct windows per bearing condition in a process's pool
POOL_SEED = 0x5E45  # every process and run builds the same pool: seeded fleets replay the same
# (input tensor, noise) -> per bearing condition, POOL_PER_CLASS quantized feature vectors
_pools: dict[tuple[TensorSpec, float], list[list[bytes]]] = {}


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


def _draw_label(rng: random.Random, mix: InputMix, elapsed: float) -> int:
    """The bearing condition of the next window, from the mix as it stands `elapsed` seconds in."""
    classes = len(VIBRATION_CLASSES)
    if mix.uniform:
        return rng.randrange(classes)  # the draw of earlier versions: seeded fleets replay the same
    return rng.choices(range(classes), mix.weights_at(elapsed, classes))[0]


def _window_input(inp: TensorSpec, label: int, np_rng: np.random.Generator, noise: float) -> bytes:
    window = vibration_window(label, np_rng)
    if noise > 0:
        window = window + np_rng.normal(0.0, WINDOW_NOISE * noise, len(window)).astype(np.float32)
    return quantize(vibration_features(window), inp)


def vibration_input(
    inp: TensorSpec, rng: random.Random, mix: InputMix | None = None, elapsed: float = 0.0
) -> tuple[int, bytes]:
    """(bearing condition, quantized features of one window in that condition), the condition drawn from
    the mix as it stands `elapsed` seconds into the device's run; a fresh window every call."""
    mix = mix or InputMix()
    label = _draw_label(rng, mix, elapsed)
    return label, _window_input(inp, label, np.random.default_rng(rng.getrandbits(32)), mix.noise)


def _pool(inp: TensorSpec, noise: float) -> list[list[bytes]]:
    key = (inp, noise)
    pool = _pools.get(key)
    if pool is None:
        pool = []
        for label in range(len(VIBRATION_CLASSES)):
            np_rng = np.random.default_rng((POOL_SEED, label))
            pool.append([_window_input(inp, label, np_rng, noise) for _ in range(POOL_PER_CLASS)])
        _pools[key] = pool
    return pool


def pooled_vibration_input(
    inp: TensorSpec, rng: random.Random, mix: InputMix | None = None, elapsed: float = 0.0
) -> tuple[int, bytes]:
    """As `vibration_input`, the window taken from the process's pool for that condition. It takes as
    many draws from `rng` as `vibration_input`, so a device's seeded faults stay where they were."""
    mix = mix or InputMix()
    label = _draw_label(rng, mix, elapsed)
    windows = _pool(inp, mix.noise)[label]
    return label, windows[rng.getrandbits(32) % len(windows)]


def sensor_input(
    inp: TensorSpec, out: TensorSpec, rng: random.Random, mix: InputMix | None = None, elapsed: float = 0.0
) -> bytes:
    """One input tensor's bytes for the model with these input and output tensors (a fresh window)."""
    if is_vibration_model(inp, out):
        return vibration_input(inp, rng, mix, elapsed)[1]
    return rng.randbytes(inp.nbytes)


def pooled_input(
    inp: TensorSpec, out: TensorSpec, rng: random.Random, mix: InputMix | None = None, elapsed: float = 0.0
) -> bytes:
    """As `sensor_input`, vibration windows taken from the process's pool (what a fleet's devices use)."""
    if is_vibration_model(inp, out):
        return pooled_vibration_input(inp, rng, mix, elapsed)[1]
    return rng.randbytes(inp.nbytes)
