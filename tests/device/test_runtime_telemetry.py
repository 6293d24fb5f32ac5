"""The runtime's own inference telemetry (docs/PROTOCOL.md 3.2.6) through UART frames: the histogram and
the confidence it reports must match what the INFER outputs say, and it restarts with a new model."""

from __future__ import annotations

import random

import pytest

from tests.support.device_frames import (
    MANIFEST,
    activate_selftest_confirm,
    has_engine,
    install,
    new_device,
    ok,
    package,
)
from tinyfleet.device import frames
from tinyfleet.device.engine import Engine
from tinyfleet.device.runtime import DeviceRuntime

CPU_HZ = 64_000_000
MILLI_CPM = 2500
CYCLES_PER_OP = 300


def _device() -> DeviceRuntime:
    return new_device(cpu_hz=CPU_HZ, milli_cycles_per_mac=MILLI_CPM, cycles_per_op=CYCLES_PER_OP)


def _telemetry(dev: DeviceRuntime) -> frames.Telemetry:
    return frames.parse_telemetry(ok(dev, frames.telemetry()))


def test_telemetry_matches_the_infer_outputs() -> None:
    with _device() as dev:
        if not has_engine(dev):
            pytest.skip("no inference engine in this build")
        before = _telemetry(dev).model
        assert before.inferences == 0 and before.histogram == (0,) * frames.TELEMETRY_CLASSES
        pkg = package("good_selftest.tfpkg")
        assert install(dev, pkg) == 0
        activate_selftest_confirm(dev)
        engine = Engine(pkg[MANIFEST:])
        out_info = engine.output_info()
        rng = random.Random(5)
        histogram = [0] * frames.TELEMETRY_CLASSES
        confidence_q16 = 0
        runs = 60
        for _ in range(runs):
            result = frames.parse_infer(ok(dev, frames.infer(rng.randbytes(8))))
            assert result is not None
            scores = [b - 256 if b > 127 else b for b in result.output]
            top = scores.index(max(scores))
            histogram[top] += 1
            value = out_info.scale * (scores[top] - out_info.zero_point)
            confidence_q16 += round(min(max(value, 0.0), 1.0) * frames.Q16_ONE)
        tel = _telemetry(dev).model
        assert tel.model_sha256 == dev_active_sha(dev)
        assert tel.inferences == runs and tel.classified == runs and tel.errors == 0
        assert list(tel.histogram) == histogram and tel.histogram_other == 0
        assert sum(1 for n in histogram if n) >= 2, "random inputs should reach more than one class"
        assert tel.confidence_q16_total == confidence_q16
        assert tel.confidence_mean == pytest.approx(confidence_q16 / frames.Q16_ONE / runs)
        # Latency is an estimate from the engine's operation counts and the configured clock.
        per_run = engine.mac_count * MILLI_CPM // 1000 + engine.op_count * CYCLES_PER_OP
        assert tel.latency_estimated and tel.cpu_hz == CPU_HZ
        assert tel.cycles_total == runs * per_run
        assert tel.latency_us_mean == pytest.approx(per_run * 1e6 / CPU_HZ)
        assert tel.arena_bytes == engine.arena_used


def dev_active_sha(dev: DeviceRuntime) -> str:
    active = frames.parse_state(ok(dev, frames.state())).active
    assert active is not None
    return active.model_sha256.hex() if isinstance(active.model_sha256, bytes) else str(active.model_sha256)


def test_telemetry_restarts_when_the_active_model_changes() -> None:
    with _device() as dev:
        if not has_engine(dev):
            pytest.skip("no inference engine in this build")
        assert install(dev, package("good_active.tfpkg")) == 0
        activate_selftest_confirm(dev)
        for _ in range(3):
            ok(dev, frames.infer(bytes(8)))
        first = _telemetry(dev).model
        assert first.inferences == 3
        assert install(dev, package("compressed_good.tfpkg")) == 0  # another model
        ok(dev, frames.activate())
        second = _telemetry(dev).model
        assert second.model_sha256 != first.model_sha256 and second.inferences == 0
        assert sum(second.histogram) == 0 and second.cycles_total == 0
        assert _telemetry(dev).inferences == 3  # the link counters since boot are kept


def test_a_short_or_odd_telemetry_body_is_a_protocol_error() -> None:
    body = bytearray(frames.TELEMETRY_SIZE)
    body[49] = frames.TELEMETRY_CLASSES
    assert frames.parse_telemetry(bytes(body)).model.model_sha256 is None
    with pytest.raises(frames.ProtocolError):
        frames.parse_telemetry(bytes(body[:48]))
    body[49] = 8
    with pytest.raises(frames.ProtocolError):
        frames.parse_telemetry(bytes(body))
