"""The Cortex-M4 firmware under QEMU driven like the host runtime: the device settings of
tests/vectors/device.json and an install that goes all the way to CONFIRM."""

from __future__ import annotations

import json
from typing import Any

from tests.support.paths import VECTORS
from tinyfleet.device import frames
from tinyfleet.sim.qemu import QemuDevice

DEVICE: dict[str, Any] = (
    json.loads((VECTORS / "device.json").read_text()) if (VECTORS / "device.json").exists() else {}
)
CHUNK = 256  # several chunks per package, so that chunking and resume are exercised


def vector(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def install_and_confirm(dev: QemuDevice, package: bytes) -> int:
    """Upload, activate, self-test and confirm; returns the slot the model went to."""
    assert dev.upload(package, CHUNK).phase == frames.Phase.DOWNLOADED
    report = frames.parse_phase(dev.call(frames.activate()))
    assert report.phase == frames.Phase.TRIAL
    assert report.active_slot is not None
    dev.call(frames.selftest())
    assert frames.parse_phase(dev.call(frames.confirm())).phase == frames.Phase.IDLE
    return report.active_slot
