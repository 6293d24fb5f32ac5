"""User journey: simulated devices running micro_speech (int8 [1,1960]) must report telemetry. The
driver used to send the whole input in one INFER frame, which the frame codec refuses above
MAX_INFER_INPUT, so every telemetry tick died with a traceback and no report reached the server."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.support.device_frames import (
    DEVICE,
    activate_selftest_confirm,
    install,
    new_device,
    ok,
    trusted_keys,
)
from tests.support.paths import VECTORS
from tinyfleet.device import frames
from tinyfleet.sim.profiles import DeviceProfile
from tinyfleet.sim.runtime_driver import RuntimeDriver, TrustedKey


def _signed_micro_speech(models: Path) -> bytes:
    from tinyfleet.signing.keys import load_private_key
    from tinyfleet.signing.package import build_package

    model_path = models / "micro_speech_quantized.tflite"
    return build_package(
        model_path.read_bytes(), load_private_key(VECTORS / "key_trusted.pem"), name="micro-speech",
        version=(1, 0, 0), sequence=1, security_counter=0, hardware_class=DEVICE["hardware_class"],
        min_runtime_version=0, arena_bytes=32 * 1024, selftest_seed=0, selftest_output_sha256=None,
    )  # fmt: skip


def test_driver_infers_an_input_larger_than_one_frame(shared_models: Path) -> None:
    pkg = _signed_micro_speech(shared_models)
    profile = DeviceProfile(
        name="journey", hardware_class=DEVICE["hardware_class"], slot_size=64 * 1024, ram_budget=64 * 1024
    )
    driver = RuntimeDriver(profile, [TrustedKey(kid, pub) for kid, pub in trusted_keys()])
    if not frames.parse_hello(driver._call(frames.hello()).payload).has_inference:
        pytest.skip("no inference engine in this build")
    manifest, payload = pkg[:292], pkg[292:]
    offset = driver.install_begin(manifest)
    driver.install_chunk(offset, payload[offset:])
    driver.install_end()
    driver.activate()
    driver.selftest()
    driver.confirm()

    sample = random.Random(7).randbytes(1960)
    assert len(sample) > frames.MAX_INFER_INPUT
    result = driver.infer(sample)
    assert len(result.output) == 4  # four keyword classes

    # The same input written slice by slice by hand on a second device gives the same output, so the
    # driver's slices reached the tensor at the right offsets.
    with new_device(slot_size=64 * 1024, ram_budget=64 * 1024) as other:
        assert install(other, pkg) == 0
        activate_selftest_confirm(other)
        cut = 1000  # not where the driver cuts (MAX_INFER_INPUT)
        assert frames.parse_infer(ok(other, frames.infer(sample[:cut], run=False))) is None
        expected = frames.parse_infer(ok(other, frames.infer(sample[cut:], offset=cut)))
        assert expected is not None and expected.output == result.output
    assert driver.telemetry().model.inferences == 1
