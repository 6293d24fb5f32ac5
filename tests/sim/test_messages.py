"""The agent's message parsing (docs/PROTOCOL.md 4.1, 4.3) and device profiles: pure functions."""

from __future__ import annotations

import json
import struct

import pytest

from tinyfleet.sim.agent import parse_chunk, parse_desired
from tinyfleet.sim.profiles import PROFILES, DeviceProfile, Faults, FleetMix, get_profile

SHA = "ab" * 32


def desired(**fields: object) -> bytes:
    doc = {
        "action_id": "act-1",
        "operation": "install",
        "package_id": "pkg-1",
        "package_size": 3000,
        "model_sha256": SHA,
        "chunk_size": 1024,
    }
    doc.update(fields)
    return json.dumps(doc).encode()


def test_parse_desired_install() -> None:
    action = parse_desired(desired())
    assert (action.operation, action.package_id, action.package_size, action.chunk_size) == (
        "install",
        "pkg-1",
        3000,
        1024,
    )
    assert action.model_sha256 == SHA


def test_parse_desired_none_and_revert() -> None:
    assert parse_desired(json.dumps({"action_id": None, "operation": "none"}).encode()).operation == "none"
    revert = parse_desired(desired(operation="revert", package_id=None, package_size=0))
    assert revert.operation == "revert"


def test_parse_desired_ignores_unknown_keys() -> None:
    assert parse_desired(desired(future_field=[1, 2])).package_id == "pkg-1"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b"null",
        desired(operation="format-flash"),
        desired(action_id=5),
        desired(model_sha256="zz" * 32),
        desired(model_sha256="ab"),
        desired(package_id=""),
        desired(package_id="caf\u00e9"),
        desired(package_size=10),
        desired(package_size=2**40),
        desired(package_size="3000"),
        desired(package_size=True),
        desired(chunk_size=0),
        desired(chunk_size=None),
    ],
)
def test_parse_desired_rejects_malformed(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_desired(payload)


def chunk(package_id: bytes = b"pkg-1", offset: int = 292, size: int = 3000, data: bytes = b"xyz") -> bytes:
    return bytes([1, len(package_id)]) + package_id + struct.pack("<II", offset, size) + data


def test_parse_chunk() -> None:
    assert parse_chunk(chunk()) == ("pkg-1", 292, 3000, b"xyz")


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x01", b"\x02\x05pkg-1" + b"\0" * 8, chunk()[:10], bytes([1, 2, 0xFF, 0xFE]) + b"\0" * 8],
)
def test_parse_chunk_rejects_malformed(payload: bytes) -> None:
    with pytest.raises(ValueError):
        parse_chunk(payload)


def test_profiles_are_valid() -> None:
    for profile in PROFILES.values():
        profile.validate()
    with pytest.raises(ValueError, match="unknown device profile"):
        get_profile("toaster")


@pytest.mark.parametrize(
    "profile",
    [
        DeviceProfile(name=""),
        DeviceProfile(name="x", sector_size=3000),
        DeviceProfile(name="x", slot_size=5000),
        DeviceProfile(name="x", bandwidth_bps=-1),
        DeviceProfile(name="x", faults=Faults(chunk_loss=1.5)),
        DeviceProfile(name="x", faults=Faults(slow_factor=0.5)),
    ],
)
def test_profile_validation(profile: DeviceProfile) -> None:
    with pytest.raises(ValueError):
        profile.validate()


def test_link_delay() -> None:
    profile = DeviceProfile(name="x", bandwidth_bps=1000, latency_s=0.1, faults=Faults(slow_factor=2.0))
    assert profile.link_delay(500) == pytest.approx(1.2)
    assert get_profile("lan").link_delay(10_000) == 0.0


def test_fleet_mix_is_reproducible() -> None:
    mix = FleetMix.parse("lan:0.8, flaky:0.2")
    first = [p.name for p in mix.assign(200, seed=7)]
    assert first == [p.name for p in mix.assign(200, seed=7)]
    assert set(first) == {"lan", "flaky"}
    for bad in ("lan:x", "lan:-1", "nope"):
        with pytest.raises(ValueError):
            FleetMix.parse(bad)
