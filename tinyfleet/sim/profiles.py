"""Device profiles: what kind of device a simulated agent pretends to be, and which faults it suffers.

A profile has two halves. The hardware half (hardware class, slot size, RAM budget) goes to the real C
runtime's device config, so policy checks run on true values. The link half (bandwidth, latency) and the
fault knobs are applied by the agent around its MQTT traffic: they shape timing and inject failures, they
never bypass the runtime.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Faults:
    """Fault knobs, all off by default. Probabilities are per event, in [0, 1]."""

    # Probability, per second online, that the device drops its MQTT connection and reconnects later.
    churn_per_second: float = 0.0
    # How long a churned device stays away, in seconds.
    offline_seconds: float = 2.0
    # Probability that a requested chunk is "lost on the link": the agent ignores it and re-asks by offset
    # after chunk_timeout.
    chunk_loss: float = 0.0
    # Probability, per install, that power is cut while the package is being written (host library's
    # power-cut injection); the device reboots and resumes.
    power_cut_during_install: float = 0.0
    # Dead devices never come online; slow devices multiply every delay by slow_factor.
    dead: bool = False
    slow_factor: float = 1.0

    def validate(self) -> None:
        for name in ("churn_per_second", "chunk_loss", "power_cut_during_install"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.offline_seconds < 0:
            raise ValueError("offline_seconds must not be negative")
        if self.slow_factor < 1.0:
            raise ValueError("slow_factor must be at least 1")


@dataclass(frozen=True)
class InputMix:
    """What a device's sensor sees (tinyfleet/sim/sensors.py): how often each class of the model's task
    occurs, extra sensor noise, and a drift of the class mix over time. For the vibration classifier the
    classes are ml.datasets.VIBRATION_CLASSES (normal, inner_race, outer_race, ball). Models of unknown
    task get random bytes, which no mix applies to. Defaults: every class equally often, no extra noise,
    no drift, so a fleet's telemetry is the same whether a canary or a control device reports it."""

    # Relative weight per class (need not sum to 1); () = every class equally often.
    class_weights: tuple[float, ...] = ()
    # Extra Gaussian noise on the raw sensor window, as a multiple of the window's own noise (0.5 g):
    # 1.0 doubles its variance; the classifier then gets less sure and more often wrong.
    noise: float = 0.0
    # The class weights the mix moves to, linearly over drift_seconds of device uptime, then stays at.
    drift_to: tuple[float, ...] = ()
    drift_seconds: float = 0.0

    def validate(self) -> None:
        for name in ("class_weights", "drift_to"):
            weights = getattr(self, name)
            if any(w < 0 for w in weights) or (weights and sum(weights) <= 0):
                raise ValueError(f"{name} must be non-negative with a positive sum")
        if self.noise < 0 or self.drift_seconds < 0:
            raise ValueError("noise and drift_seconds must not be negative")
        if self.drift_to and self.drift_seconds <= 0:
            raise ValueError("drift_to needs a positive drift_seconds")
        if self.drift_to and self.class_weights and len(self.drift_to) != len(self.class_weights):
            raise ValueError("drift_to and class_weights must give the same number of classes")

    @property
    def uniform(self) -> bool:
        return not self.class_weights and not self.drift_to

    def weights_at(self, elapsed: float, classes: int) -> list[float]:
        """Normalised class weights after `elapsed` seconds; classes beyond those given get weight 0."""

        def norm(weights: tuple[float, ...]) -> list[float]:
            w = (
                list(weights[:classes]) + [0.0] * max(0, classes - len(weights))
                if weights
                else [1.0] * classes
            )
            total = sum(w)
            if total <= 0:
                raise ValueError(f"the input mix gives no weight to any of the model's {classes} classes")
            return [x / total for x in w]

        start = norm(self.class_weights)
        if not self.drift_to:
            return start
        f = min(1.0, max(0.0, elapsed) / self.drift_seconds)
        return [(1 - f) * a + f * b for a, b in zip(start, norm(self.drift_to), strict=True)]


@dataclass(frozen=True)
class DeviceProfile:
    """One class of device. Sizes are bytes; bandwidth is bytes per second (0 = unlimited)."""

    name: str
    hardware_class: int = 1
    slot_size: int = 64 * 1024
    sector_size: int = 4096
    ram_budget: int = 64 * 1024
    bandwidth_bps: int = 0
    latency_s: float = 0.0
    inference_hz: float = 1.0
    telemetry_period_s: float = 10.0
    chunk_timeout_s: float = 5.0
    # Latency model for the runtime's telemetry on the host library (no MCU cycles to count): cycles per
    # inference = MACs * milli_cycles_per_mac / 1000 + ops * cycles_per_op, at cpu_hz. Reported as an
    # estimate. The defaults are a Cortex-M4 class guess, not a measurement.
    cpu_hz: int = 64_000_000
    milli_cycles_per_mac: int = 2_000
    cycles_per_op: int = 500
    faults: Faults = field(default_factory=Faults)
    inputs: InputMix = field(default_factory=InputMix)

    def validate(self) -> None:
        if not self.name:
            raise ValueError("a profile needs a name")
        if self.hardware_class < 0 or self.hardware_class > 0xFFFFFFFF:
            raise ValueError("hardware_class must fit in 32 bits")
        if self.sector_size <= 0 or self.sector_size & (self.sector_size - 1):
            raise ValueError("sector_size must be a power of two")
        if self.slot_size <= 0 or self.slot_size % self.sector_size:
            raise ValueError("slot_size must be a positive multiple of sector_size")
        if self.bandwidth_bps < 0 or self.latency_s < 0 or self.inference_hz < 0:
            raise ValueError("bandwidth, latency and inference rate must not be negative")
        for name in ("cpu_hz", "milli_cycles_per_mac", "cycles_per_op"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise ValueError(f"{name} must fit in 32 bits")
        if self.chunk_timeout_s <= 0:
            raise ValueError("chunk_timeout_s must be positive")
        self.faults.validate()
        self.inputs.validate()

    def link_delay(self, nbytes: int) -> float:
        """Seconds a chunk of nbytes spends on this device's link (latency + serialisation)."""
        seconds = self.latency_s + (nbytes / self.bandwidth_bps if self.bandwidth_bps else 0.0)
        return seconds * self.faults.slow_factor

    def with_faults(self, **knobs: float | bool) -> DeviceProfile:
        return replace(self, faults=replace(self.faults, **knobs))  # type: ignore[arg-type]

    def with_inputs(self, **knobs: Any) -> DeviceProfile:
        return replace(self, inputs=replace(self.inputs, **knobs))


# Built-in profiles. The LAN one is what the demo and tests use: no artificial delay, so wall time is
# spent in the runtime, the broker and the server rather than in sleeps.
PROFILES: dict[str, DeviceProfile] = {
    "lan": DeviceProfile(name="lan"),
    "wifi-m4": DeviceProfile(name="wifi-m4", bandwidth_bps=250_000, latency_s=0.02, inference_hz=5.0),
    "nbiot-m0": DeviceProfile(
        name="nbiot-m0",
        hardware_class=2,
        cpu_hz=16_000_000,
        milli_cycles_per_mac=4_000,
        slot_size=32 * 1024,
        ram_budget=16 * 1024,
        bandwidth_bps=4_000,
        latency_s=0.4,
        inference_hz=0.2,
        chunk_timeout_s=15.0,
    ),
    "flaky": DeviceProfile(
        name="flaky",
        faults=Faults(
            churn_per_second=0.02, offline_seconds=1.0, chunk_loss=0.05, power_cut_during_install=0.1
        ),
    ),
}


def get_profile(name: str) -> DeviceProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown device profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


@dataclass(frozen=True)
class FleetMix:
    """Which profile each device of a fleet gets: weighted choice, reproducible from a seed."""

    weights: tuple[tuple[DeviceProfile, float], ...]

    @classmethod
    def single(cls, profile: DeviceProfile) -> FleetMix:
        return cls(((profile, 1.0),))

    @classmethod
    def parse(cls, text: str) -> FleetMix:
        """`lan` or `lan:0.9,flaky:0.1` (names from PROFILES, weights need not sum to 1)."""
        pairs: list[tuple[DeviceProfile, float]] = []
        for part in text.split(","):
            name, _, weight = part.strip().partition(":")
            try:
                w = float(weight) if weight else 1.0
            except ValueError:
                raise ValueError(f"bad weight in profile mix {part!r}") from None
            if w <= 0:
                raise ValueError(f"profile weight must be positive in {part!r}")
            pairs.append((get_profile(name), w))
        return cls(tuple(pairs))

    def assign(self, count: int, seed: int = 0) -> list[DeviceProfile]:
        rng = random.Random(seed)
        profiles = [p for p, _ in self.weights]
        weights = [w for _, w in self.weights]
        return [rng.choices(profiles, weights)[0] for _ in range(count)]
