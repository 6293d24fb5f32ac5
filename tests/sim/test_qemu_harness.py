"""The QEMU harness's own checks, without QEMU: the provisioning record it writes and its refusals."""

from __future__ import annotations

import hashlib
import struct
import zlib
from pathlib import Path

import pytest

from tinyfleet.sim.qemu import FLASH_SECTOR, PROVISION_SIZE, Provision, QemuDevice, QemuError


def test_provisioning_record_layout() -> None:
    keys = [bytes(range(32)), bytes(range(32, 64))]
    record = Provision(keys, hardware_class=7, ram_budget=16384, slot_size=65536, max_trial_boots=2).encode()
    assert len(record) == PROVISION_SIZE
    assert record[:4] == b"TFPV"
    assert struct.unpack_from("<HHIIIB", record, 4) == (1, 2, 7, 16384, 65536, 2)
    assert record[21:24] == b"\x00\x00\x00"
    for i, key in enumerate(keys):
        entry = record[24 + 40 * i : 64 + 40 * i]
        assert entry == hashlib.sha256(key).digest()[:8] + key
    end = 24 + 40 * len(keys)
    assert struct.unpack_from("<I", record, end)[0] == zlib.crc32(record[:end])
    assert set(record[end + 4 :]) == {0xFF}


def test_flash_geometry_follows_the_slot_size() -> None:
    provision = Provision([bytes(32)], slot_size=16384)
    assert provision.flash_size == 2 * FLASH_SECTOR + 2 * 16384
    assert provision.slot_address(0) == 2 * FLASH_SECTOR
    assert provision.slot_address(1) == 2 * FLASH_SECTOR + 16384


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"public_keys": []}, "trusted keys"),
        ({"public_keys": [bytes(32)] * 9}, "trusted keys"),
        ({"public_keys": [bytes(31)]}, "32 bytes"),
        ({"public_keys": [bytes(32)], "slot_size": 1000}, "slot size"),
        ({"public_keys": [bytes(32)], "slot_size": 8 * 1024 * 1024}, "slot size"),
        ({"public_keys": [bytes(32)], "hardware_class": -1}, "hardware_class"),
        ({"public_keys": [bytes(32)], "ram_budget": 1 << 32}, "ram_budget"),
        ({"public_keys": [bytes(32)], "max_trial_boots": 256}, "max_trial_boots"),
    ],
)
def test_bad_provisioning_is_refused_with_a_clear_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Provision(**kwargs).encode()  # type: ignore[arg-type]


def test_a_flash_image_of_another_geometry_is_refused(tmp_path: Path) -> None:
    (tmp_path / "flash.bin").write_bytes(b"\xff" * 1000)
    firmware = tmp_path / "firmware.elf"
    firmware.write_bytes(b"\x7fELF")
    device = QemuDevice(Provision([bytes(32)], slot_size=16384), tmp_path, firmware)
    with pytest.raises(QemuError, match="wrong work directory"):
        device.power_on()
    assert not device.running


def test_missing_firmware_is_a_clear_error(tmp_path: Path) -> None:
    device = QemuDevice(Provision([bytes(32)]), tmp_path, tmp_path / "nope.elf")
    with pytest.raises(QemuError, match="firmware not built"):
        device.power_on()
