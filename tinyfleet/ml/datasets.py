"""Data sets that need no download: generated sensor signals and scikit-learn's bundled digits.

Each loader returns a `Dataset` with float32 inputs already shaped for the model and int labels.
The generators are deterministic for a given seed so that tests and the demo are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VIBRATION_WINDOW = 256
VIBRATION_BINS = 32
VIBRATION_CLASSES = ("normal", "inner_race", "outer_race", "ball")
GESTURE_STEPS = 32
GESTURE_CLASSES = ("idle", "shake", "circle", "tap")


@dataclass(frozen=True)
class Dataset:
    name: str
    x: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]

    def split(self, test_fraction: float = 0.25, seed: int = 0) -> tuple[Dataset, Dataset]:
        order = np.random.default_rng(seed).permutation(len(self.y))
        cut = int(len(order) * (1.0 - test_fraction))
        train, test = order[:cut], order[cut:]
        return (
            Dataset(self.name, self.x[train], self.y[train], self.class_names),
            Dataset(self.name, self.x[test], self.y[test], self.class_names),
        )

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])


def vibration_window(label: int, rng: np.random.Generator, sample_rate: float = 4000.0) -> np.ndarray:
    """One accelerometer window from a bearing with the given fault class.

    A healthy bearing shows the shaft frequency and its harmonics in noise; a fault adds periodic
    impacts at its characteristic frequency (ball-pass inner/outer race, ball spin), each impact ringing
    a structural resonance, so the fault shows as resonance energy modulated at that frequency.
    """
    t = np.arange(VIBRATION_WINDOW) / sample_rate
    shaft = rng.uniform(20.0, 35.0)
    signal = 0.6 * np.sin(2 * np.pi * shaft * t + rng.uniform(0, 2 * np.pi))
    signal += 0.2 * np.sin(2 * np.pi * 2 * shaft * t + rng.uniform(0, 2 * np.pi))
    signal += rng.normal(0.0, 0.5, VIBRATION_WINDOW)
    if label:
        fault_order = {1: 5.4, 2: 3.6, 3: 2.3}[label]
        resonance = {1: 1500.0, 2: 900.0, 3: 600.0}[label] * rng.uniform(0.92, 1.08)
        period = 1.0 / (fault_order * shaft)
        phase = rng.uniform(0, period)
        since_impact = np.mod(t - phase, period)
        ringing = np.exp(-since_impact * 300.0) * np.sin(2 * np.pi * resonance * since_impact)
        signal += rng.uniform(0.6, 2.4) * ringing
    return signal.astype(np.float32)


def vibration_features(window: np.ndarray) -> np.ndarray:
    """Log-magnitude spectrum in VIBRATION_BINS bands, centred and scaled by fixed constants (not by
    data statistics, so that the device computes exactly the same features before inference)."""
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))[1:]
    bands = spectrum[: (len(spectrum) // VIBRATION_BINS) * VIBRATION_BINS].reshape(VIBRATION_BINS, -1)
    features: np.ndarray = ((np.log1p(bands.mean(axis=1)) - 1.5) / 0.5).astype(np.float32)
    return features


def bearing_vibration(samples: int = 2000, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(VIBRATION_CLASSES), samples)
    x = np.stack([vibration_features(vibration_window(int(label), rng)) for label in labels])
    return Dataset("vibration", x, labels.astype(np.int64), VIBRATION_CLASSES)


def gesture_window(label: int, rng: np.random.Generator) -> np.ndarray:
    """GESTURE_STEPS x 3 accelerometer samples (g) of one gesture, with gravity on z and sensor noise."""
    t = np.linspace(0.0, 1.0, GESTURE_STEPS)
    xyz = np.zeros((GESTURE_STEPS, 3), dtype=np.float64)
    xyz[:, 2] = 1.0
    amplitude = rng.uniform(0.6, 1.4)
    if label == 1:  # shake: fast oscillation along x
        xyz[:, 0] += amplitude * np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * t)
    elif label == 2:  # circle: x and y in quadrature
        freq = rng.uniform(1.5, 2.5)
        xyz[:, 0] += amplitude * np.cos(2 * np.pi * freq * t)
        xyz[:, 1] += amplitude * np.sin(2 * np.pi * freq * t)
    elif label == 3:  # tap: one sharp spike on z
        at = rng.integers(4, GESTURE_STEPS - 4)
        xyz[at, 2] += 2.5 * amplitude
        xyz[at + 1, 2] -= 1.2 * amplitude
    xyz += rng.normal(0.0, 0.12, xyz.shape)
    return xyz.astype(np.float32)


def accelerometer_gestures(samples: int = 2000, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(GESTURE_CLASSES), samples)
    x = np.stack([gesture_window(int(label), rng) for label in labels])[..., np.newaxis]
    return Dataset("gestures", x, labels.astype(np.int64), GESTURE_CLASSES)


def digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[..., np.newaxis]
    return Dataset("digits", x, bunch.target.astype(np.int64), tuple(str(d) for d in range(10)))


LOADERS = {"vibration": bearing_vibration, "gestures": accelerometer_gestures}


def load(name: str, samples: int = 2000, seed: int = 0) -> Dataset:
    if name == "digits":
        return digits()
    if name not in LOADERS:
        raise ValueError(f"unknown data set {name!r}; choose one of: digits, {', '.join(LOADERS)}")
    return LOADERS[name](samples=samples, seed=seed)
