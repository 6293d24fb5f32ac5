"""Device install policy (docs/PROTOCOL.md section 1.1, after field ranges): what the C runtime checks
before accepting a payload, mirrored here so the server and the test vectors can predict a refusal.

Order: hardware class, runtime version, security counter, sequence, sizes (slot, then arena).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinyfleet.signing.errors import (
    ArenaTooLarge,
    Replayed,
    RollbackRefused,
    RuntimeTooOld,
    TooLarge,
    WrongHardware,
)
from tinyfleet.signing.manifest import MANIFEST_SIZE, Manifest, runtime_version_str

# Where a slot's model starts: the 292-byte manifest rounded up to 16 bytes (TFA_SLOT_MODEL_OFFSET).
SLOT_MODEL_OFFSET = (MANIFEST_SIZE + 15) // 16 * 16


@dataclass(frozen=True)
class DeviceConfig:
    """A device's install-policy configuration, as the C runtime's `tfa_device_config_t` holds it."""

    hardware_class: int
    runtime_version: int  # major<<16 | minor<<8 | patch
    ram_budget: int  # largest tensor arena the device can give a model
    slot_size: int  # bytes per flash slot
    sector_size: int  # flash erase unit (the slot size is a multiple of it)
    security_floor: int = 0
    active_sequence: int | None = None  # sequence of the active model, None when there is none

    @property
    def slot_capacity(self) -> int:
        """Bytes left for the model (or payload) in a slot: the runtime stores the manifest at the slot's
        start and the model at SLOT_MODEL_OFFSET (agent_firmware/core/include/tfa/runtime.h)."""
        return max(self.slot_size - SLOT_MODEL_OFFSET, 0)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DeviceConfig:
        return cls(
            hardware_class=int(obj["hardware_class"]),
            runtime_version=int(obj["runtime_version"]),
            ram_budget=int(obj["ram_budget"]),
            slot_size=int(obj["slot_size"]),
            sector_size=int(obj["sector_size"]),
            security_floor=int(obj.get("security_floor", 0)),
            active_sequence=None if obj.get("active_sequence") is None else int(obj["active_sequence"]),
        )


def check_policy(m: Manifest, device: DeviceConfig) -> None:
    """Raise the PolicyError the device would return for an authenticated manifest, or return None."""
    if m.hardware_class != device.hardware_class:
        raise WrongHardware(
            f"package is for hardware class {m.hardware_class}, device is {device.hardware_class}"
        )
    if m.min_runtime_version > device.runtime_version:
        raise RuntimeTooOld(
            f"package needs runtime {m.min_runtime_str}, "
            f"device runs {runtime_version_str(device.runtime_version)}"
        )
    if m.security_counter < device.security_floor:
        raise RollbackRefused(
            f"security counter {m.security_counter} is below the device floor {device.security_floor}"
        )
    if device.active_sequence is not None and m.sequence <= device.active_sequence:
        raise Replayed(
            f"sequence {m.sequence} is not greater than the active model's {device.active_sequence}"
        )
    largest = max(m.model_size, m.payload_size)
    if largest > device.slot_capacity:
        raise TooLarge(f"{largest} bytes do not fit a slot of {device.slot_capacity} usable bytes")
    if m.arena_bytes > device.ram_budget:
        raise ArenaTooLarge(
            f"arena of {m.arena_bytes} bytes exceeds the device RAM budget of {device.ram_budget}"
        )
