"""A simulated fleet's device that is the real firmware: one QEMU mps2-an386 board behind a driver.

`QemuTransport` gives `RuntimeDriver` the same contract as the host library (one frame in, one frame
out, power switch), so the agent code, MQTT included, is unchanged. Each board is one QEMU process
(about 45 MB resident, a share of a core while it computes), so a fleet runs only a few of them.

The board's factory record (trusted keys, hardware class, RAM budget, slot size, and the device's X25519
key when it has one) is written from the same profile, trust store and key a host device gets; a board
with a key runs the firmware built with decryption (`make ENCRYPTION=1`) when that was built. Requests
block the calling thread (the fleet's event loop) while the emulated CPU works, which is fine for a
handful of boards. Not supported here: the
profile's power-cut injection (the QEMU harness cuts power only through gdbstub breakpoints, which
this transport does not arm), so `QemuTransport` refuses a profile that asks for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tinyfleet.device import frames
from tinyfleet.device.runtime import TensorSpec
from tinyfleet.signing.keys import TrustedKey
from tinyfleet.sim.profiles import DeviceProfile
from tinyfleet.sim.qemu import (
    FIRMWARE_ELF,
    FIRMWARE_TARGETS,
    FLASH_SECTOR,
    PROVISION_MAX_KEYS,
    Provision,
    QemuDevice,
    QemuError,
    firmware_dir,
    missing_tools,
)

ENGINE_ELF = FIRMWARE_ELF.parent / FIRMWARE_TARGETS["engine"]


def default_firmware(encryption: bool = False) -> Path:
    """The engine build (inference and self-tests) when it was built, else the plain firmware; with
    `encryption`, the ENCRYPTION=1 build of either when one was built (else the same as without)."""
    if encryption:
        enc_dir = firmware_dir(encryption=True)
        for elf in (enc_dir / FIRMWARE_TARGETS["engine"], enc_dir / FIRMWARE_TARGETS["all"]):
            if elf.is_file():
                return elf
    return ENGINE_ELF if ENGINE_ELF.is_file() else FIRMWARE_ELF


def qemu_unavailable(firmware: Path | None = None) -> str | None:
    """Why QEMU devices cannot run here, or None."""
    missing = missing_tools()
    if missing is not None:
        return missing
    elf = firmware or default_firmware()
    if not elf.is_file():
        return f"firmware not built: {elf} (make -C agent_firmware/ports/mps2-an386 engine)"
    return None


def provision_for(
    profile: DeviceProfile, trusted_keys: Sequence[TrustedKey], encryption_key: bytes | None = None
) -> Provision:
    """The board's provisioning record for a profile and trust store, as a host device is configured."""
    if profile.sector_size != FLASH_SECTOR:
        raise ValueError(
            f"a QEMU device has {FLASH_SECTOR}-byte sectors; profile {profile.name}: {profile.sector_size}"
        )
    if not 1 <= len(trusted_keys) <= PROVISION_MAX_KEYS:
        raise ValueError(f"a QEMU device holds 1..{PROVISION_MAX_KEYS} trusted keys, not {len(trusted_keys)}")
    return Provision(
        public_keys=[k.public_key for k in trusted_keys],
        hardware_class=profile.hardware_class,
        ram_budget=profile.ram_budget,
        slot_size=profile.slot_size,
        encryption_key=encryption_key,
    )


class QemuTransport:
    """One booted QEMU board (its flash in a temporary directory, removed by `close()`)."""

    def __init__(
        self,
        profile: DeviceProfile,
        trusted_keys: Sequence[TrustedKey],
        firmware: Path | None = None,
        workdir: Path | None = None,
        encryption_key: bytes | None = None,
    ) -> None:
        if profile.faults.power_cut_during_install:
            raise ValueError(f"power-cut injection is not supported on QEMU devices (profile {profile.name})")
        provision = provision_for(profile, trusted_keys, encryption_key)
        elf = firmware or default_firmware(encryption=encryption_key is not None)
        # Encrypted packages need the key and a firmware with decryption (PROTOCOL 6.4); the default
        # firmware refuses them at begin (FIELD_RANGE), so the agent must not announce the capability.
        self.decrypts = encryption_key is not None and elf.parent == firmware_dir(encryption=True)
        self.device = QemuDevice(provision, workdir, elf)
        try:
            self.device.power_on()
        except QemuError:
            self.device.close()
            raise

    def request(self, request: frames.Request) -> frames.Response:
        try:
            return self.device.request(request)
        except (QemuError, frames.DeviceError) as exc:
            raise frames.ProtocolError(f"QEMU device: {exc}") from None

    def model_io(self) -> tuple[TensorSpec, TensorSpec] | None:
        return None  # the UART protocol does not describe tensors: the agent feeds a minimal input

    def arm_power_cut(self, after_ops: int, seed: int) -> None:
        raise ValueError("power-cut injection is not supported on QEMU devices")

    def powered_off(self) -> bool:
        return not self.device.running

    def power_on(self) -> None:
        if self.device.running:
            self.device.power_cycle()
        else:
            self.device.power_on()

    def close(self) -> None:
        self.device.close()
