"""The QEMU transport's refusals and provisioning, without starting QEMU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tinyfleet.signing.keys import TrustedKey
from tinyfleet.sim.profiles import get_profile
from tinyfleet.sim.qemu_transport import QemuTransport, provision_for, qemu_unavailable


def _keys(n: int) -> list[TrustedKey]:
    return [TrustedKey(bytes([i]) * 8, bytes([i]) * 32) for i in range(n)]


def test_the_board_is_provisioned_from_the_profile_and_trust_store() -> None:
    profile = replace(get_profile("lan"), hardware_class=7, ram_budget=32 * 1024, slot_size=128 * 1024)
    provision = provision_for(profile, _keys(2))
    assert list(provision.public_keys) == [bytes([0]) * 32, bytes([1]) * 32]
    assert (provision.hardware_class, provision.ram_budget, provision.slot_size) == (7, 32 * 1024, 128 * 1024)


@pytest.mark.parametrize(
    ("profile_changes", "keys", "message"),
    [
        ({"sector_size": 1024}, 1, "4096-byte sectors"),
        ({}, 0, "trusted keys"),
        ({}, 9, "trusted keys"),
    ],
)
def test_a_board_that_cannot_match_the_profile_is_refused(
    profile_changes: dict[str, int], keys: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        provision_for(replace(get_profile("lan"), **profile_changes), _keys(keys))


def test_power_cut_injection_is_refused_before_any_emulator_starts(tmp_path: Path) -> None:
    base = get_profile("lan")
    profile = replace(base, faults=replace(base.faults, power_cut_during_install=0.1))
    with pytest.raises(ValueError, match="power-cut injection"):
        QemuTransport(profile, _keys(1), firmware=tmp_path / "none.elf", workdir=tmp_path)


def test_a_missing_firmware_build_is_reported() -> None:
    reason = qemu_unavailable(Path("/nonexistent/firmware.elf"))
    assert reason is not None and ("not built" in reason or "not found" in reason)
