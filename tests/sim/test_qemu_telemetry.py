"""Inference telemetry (docs/PROTOCOL.md 3.2.6) from the Cortex-M4 engine firmware under QEMU: cycles
measured with SysTick (flag `latency_estimated` clear), and a histogram and confidence that match the
INFER outputs. QEMU runs with `-icount shift=0`, so a cycle is 40 guest instructions (docs/BENCHMARKS.md).
Skipped without qemu-system-arm / arm-none-eabi-gcc or the test vectors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.support.paths import VECTORS
from tests.support.qemu_device import DEVICE, install_and_confirm, vector
from tinyfleet.device import frames
from tinyfleet.device.engine import Engine
from tinyfleet.sim.qemu import MANIFEST_SIZE, Provision, QemuDevice, build_firmware, missing_tools

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(missing_tools() is not None, reason=f"QEMU port: {missing_tools()}"),
]

MPS2_CPU_HZ = 25_000_000


@pytest.fixture(scope="module")
def engine_firmware() -> Path:
    if not DEVICE:
        pytest.skip("tests/vectors/device.json missing")
    return build_firmware("engine")


def provision() -> Provision:
    public_key = bytes.fromhex((VECTORS / "key_trusted.pub").read_text())
    return Provision(
        public_keys=[public_key],
        hardware_class=DEVICE["hardware_class"],
        ram_budget=DEVICE["ram_budget"],
        slot_size=DEVICE["slot_size"],
        max_trial_boots=1,
    )


def telemetry(dev: QemuDevice) -> frames.ModelTelemetry:
    return frames.parse_telemetry(dev.call(frames.telemetry())).model


def test_m4_telemetry_reports_measured_cycles_and_the_infer_outputs(
    engine_firmware: Path, tmp_path: Path
) -> None:
    package = vector("good_active.tfpkg")
    try:
        engine = Engine(package[MANIFEST_SIZE:])
    except Exception as exc:  # the host library is what tells the output quantization
        pytest.skip(f"host engine unavailable: {exc}")
    out_info = engine.output_info()
    rng = random.Random(11)
    with QemuDevice(provision(), tmp_path, engine_firmware, extra_args=["-icount", "shift=0"]) as dev:
        install_and_confirm(dev, package)
        before = telemetry(dev)
        assert before.inferences == 0 and before.cycles_total == 0
        histogram = [0] * frames.TELEMETRY_CLASSES
        confidence_q16 = 0
        runs = 12
        for _ in range(runs):
            result = frames.parse_infer(dev.call(frames.infer(rng.randbytes(8))))
            assert result is not None
            scores = [b - 256 if b > 127 else b for b in result.output]
            top = scores.index(max(scores))
            histogram[top] += 1
            value = out_info.scale * (scores[top] - out_info.zero_point)
            confidence_q16 += round(min(max(value, 0.0), 1.0) * frames.Q16_ONE)
        with pytest.raises(frames.DeviceError):
            dev.call(frames.infer(b"\x01" * 9))  # beyond the input tensor: no run, no count

        tel = telemetry(dev)
        state = dev.state()
        assert state.active_slot is not None
        assert tel.model_sha256 == state.slots[state.active_slot].model_sha256.hex()
        assert tel.inferences == runs and tel.classified == runs and tel.errors == 0
        assert not tel.latency_estimated
        assert tel.cpu_hz == MPS2_CPU_HZ
        assert tel.cycles_total > 0
        # Engine metadata holds pointers: 4 bytes on the M4, 8 in the host library the model was sized by.
        assert 0 < tel.arena_bytes <= engine.arena_used
        assert list(tel.histogram) == histogram and tel.histogram_other == 0
        assert tel.confidence_q16_total == confidence_q16

        # The counts survive only as long as the model: a reboot keeps the model, so they start over at 0.
        dev.power_cycle()
        assert telemetry(dev).inferences == 0
