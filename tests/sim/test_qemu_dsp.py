"""The optimized (DSP) kernels on the emulated Cortex-M4 (firmware-engine.elf in QEMU), at the arena edge.

The manifest's arena figure comes from the host, which runs the reference kernels; the M4 runs the
optimized ones, whose scratch can need more (micro_speech: one int16 column). A device whose RAM budget
is exactly the declared figure must still pass the trial self-test (TFLM's digest) and answer INFER
with the reference's bytes. The M4's records are smaller than the host's, so the declared figure may
hold the optimized kernels too: the test reads the M4's own optimized need from the device's telemetry
(`arena_bytes`) and gives a device one byte less, where init must fall back to the reference kernels.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tinyfleet.device import frames
from tinyfleet.device.engine import Engine
from tinyfleet.signing.keys import private_key_from_seed, public_raw
from tinyfleet.signing.package import build_package
from tinyfleet.sim.qemu import Provision, QemuDevice, build_firmware, missing_tools

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(missing_tools() is not None, reason=f"QEMU port: {missing_tools()}"),
]

HARDWARE_CLASS = 0x4D34
SEED = 0x5EED1234


def _run_on_m4(model: bytes, ram_budget: int, arena_bytes: int, tmp: Path) -> tuple[bytes, int, int]:
    """Install, self-test, confirm, INFER the self-test input: (output, latency us, arena used)."""
    from tinyfleet.signing.selftest import expected_output_sha256, input_sizes, selftest_input

    key = private_key_from_seed(hashlib.sha256(b"tinyfleet dsp test").digest())
    provision = Provision([public_raw(key)], hardware_class=HARDWARE_CLASS, ram_budget=ram_budget)
    package = build_package(
        model, key, name="micro_speech", version="1.0.0", sequence=1, security_counter=0,
        hardware_class=HARDWARE_CLASS, min_runtime_version="0.1.0", arena_bytes=arena_bytes,
        selftest_seed=SEED, selftest_output_sha256=expected_output_sha256(model, SEED),
    )  # fmt: skip
    data = selftest_input(SEED, input_sizes(model)[0])
    with QemuDevice(
        provision, tmp, build_firmware("engine"), extra_args=["-icount", "shift=0"], timeout=120
    ) as dev:
        dev.upload(package, frames.MAX_CHUNK)
        for request in (frames.activate(), frames.selftest(), frames.confirm()):
            dev.call(request)  # a failed self-test raises DeviceError
        result = None
        for offset in range(0, len(data), frames.MAX_INFER_INPUT):
            last = offset + frames.MAX_INFER_INPUT >= len(data)
            reply = dev.call(frames.infer(data[offset : offset + frames.MAX_INFER_INPUT], offset, run=last))
            result = frames.parse_infer(reply) if last else result
        arena_used = frames.parse_telemetry(dev.call(frames.telemetry())).model.arena_bytes
    assert result is not None
    return result.output, result.latency_us, arena_used


def test_tight_arena_falls_back_and_spare_arena_runs_optimized(shared_models: Path, tmp_path: Path) -> None:
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    model = (shared_models / "micro_speech_quantized.tflite").read_bytes()
    from tinyfleet.signing.selftest import input_sizes, selftest_input

    reference = Engine(model)
    optimized_arena = Engine(model, optimized=True).arena_used
    assert optimized_arena > reference.arena_used
    x = np.frombuffer(selftest_input(SEED, input_sizes(model)[0]), np.int8)
    reference.set_input(0, x.reshape(reference.input_info(0).shape))
    reference.invoke()
    want = reference.output_bytes(0)

    declared, _, _ = _run_on_m4(model, reference.arena_used, reference.arena_used, tmp_path / "declared")
    spare, spare_us, optimized_need = _run_on_m4(model, 96 * 1024, reference.arena_used, tmp_path / "spare")
    # one byte short of the M4's optimized need: the manifest declares that budget too (a device refuses
    # a model that declares more than its budget)
    tight_budget = optimized_need - 1
    tight, tight_us, tight_used = _run_on_m4(model, tight_budget, tight_budget, tmp_path / "tight")
    assert declared == want and spare == want and tight == want
    assert tight_used < optimized_need, (tight_used, optimized_need)
    # instruction counts (-icount): the optimized kernels take well under half the reference's
    assert spare_us * 2 < tight_us, (spare_us, tight_us)
