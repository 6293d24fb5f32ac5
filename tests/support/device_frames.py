"""Driving the host C runtime through UART frames, as an agent drives a board: a device provisioned like
tests/vectors/device.json, and the request/answer steps of an install (for tests/device and the journeys)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.support.paths import VECTORS
from tinyfleet.device import frames
from tinyfleet.device.runtime import DeviceRuntime

MANIFEST = 292
DEVICE: dict[str, Any] = json.loads((VECTORS / "device.json").read_text())


def trusted_keys() -> list[tuple[bytes, bytes]]:
    keys = []
    for name in DEVICE["trusted_keys"]:
        public = bytes.fromhex((VECTORS / name).read_text().split()[0])
        keys.append((hashlib.sha256(public).digest()[:8], public))
    return keys


def new_device(**overrides: Any) -> DeviceRuntime:
    settings_: dict[str, Any] = {
        "hardware_class": DEVICE["hardware_class"],
        "runtime_version": DEVICE["runtime_version"],
        "ram_budget": DEVICE["ram_budget"],
        "slot_size": DEVICE["slot_size"],
        "sector_size": DEVICE["sector_size"],
        "trusted_keys": trusted_keys(),
    }
    settings_.update(overrides)
    return DeviceRuntime(**settings_)


def package(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def call(dev: DeviceRuntime, msg: frames.Request) -> frames.Response:
    response = dev.send_frame(msg)
    expected = frames.MsgType.ERROR if response.is_error else msg.type | frames.RESPONSE_BIT
    assert response.type == expected
    return response


def ok(dev: DeviceRuntime, msg: frames.Request) -> bytes:
    return call(dev, msg).raise_for_error().payload


def state(dev: DeviceRuntime) -> frames.DeviceState:
    return frames.parse_state(ok(dev, frames.state()))


def install(dev: DeviceRuntime, pkg: bytes, chunk: int = frames.MAX_CHUNK, wrap: bytes | None = None) -> int:
    """INSTALL_BEGIN with the manifest bytes (then INSTALL_KEY with `wrap` for an encrypted package),
    INSTALL_CHUNK from the resume point, INSTALL_END. Returns 0 or the first error code."""
    r = call(dev, frames.install_begin(pkg[:MANIFEST]))
    if r.is_error:
        return r.payload[0]
    if wrap is not None:
        r = call(dev, frames.install_key(wrap))
        if r.is_error:
            return r.payload[0]
    offset = frames.parse_progress(r.payload).offset  # 0, or the resume point of the same download
    while MANIFEST + offset < len(pkg):
        piece = pkg[MANIFEST + offset : MANIFEST + offset + chunk]
        r = call(dev, frames.install_chunk(offset, piece))
        if r.is_error:
            return r.payload[0]
        offset += len(piece)
        assert frames.parse_progress(r.payload).offset == offset
    r = call(dev, frames.install_end())
    if r.is_error:
        return r.payload[0]
    assert frames.parse_phase(r.payload).phase is frames.Phase.DOWNLOADED
    return 0


def activate_selftest_confirm(dev: DeviceRuntime) -> None:
    report = frames.parse_phase(ok(dev, frames.activate()))
    assert report.phase is frames.Phase.TRIAL
    ok(dev, frames.selftest())
    assert frames.parse_phase(ok(dev, frames.confirm())).phase is frames.Phase.IDLE


def slot_bytes(dev: DeviceRuntime, slot: int) -> bytes:
    start = 2 * DEVICE["sector_size"] + slot * DEVICE["slot_size"]
    return dev.read_flash()[start : start + DEVICE["slot_size"]]


def has_engine(dev: DeviceRuntime) -> bool:
    return frames.parse_hello(ok(dev, frames.hello())).has_inference
