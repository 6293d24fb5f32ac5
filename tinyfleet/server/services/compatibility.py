"""Predict a device's refusal of a package before sending it: the runtime's own install policy
(`tinyfleet.signing.policy.check_policy`, the code the test vectors pin to the C runtime) on a
DeviceConfig built from the device's reported capabilities and state, then the payload decoder and the
engine's operators. A device that never reported capabilities is not predicted (never refused here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from tinyfleet.server.models import Device, HardwareClass, Package, PackageBlob
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services.errors import Conflict, Invalid
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.errors import PolicyError, SigningError
from tinyfleet.signing.manifest import ENC_RAW, MANIFEST_SIZE, Manifest, parse_unverified
from tinyfleet.signing.policy import SLOT_MODEL_OFFSET, DeviceConfig, check_policy
from tinyfleet.signing.tflite import builtin_op_name, parse_model

DEFAULT_SECTOR_SIZE = 4096  # not used by the policy; DeviceConfig wants one


@dataclass(frozen=True)
class Refusal:
    """What a device would answer to a package: its error code and a one-line reason."""

    device_id: str
    code: ErrorCode
    reason: str

    def public(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "error_code": int(self.code), "error": self.code.name,
                "reason": self.reason}  # fmt: skip


class Incompatible(Conflict):
    """Targeted devices would refuse the package (409 with the per-device table)."""

    def __init__(self, message: str, refusals: list[Refusal]) -> None:
        super().__init__(message)
        self.refusals = refusals


@dataclass(frozen=True)
class _PackageFacts:
    manifest: Manifest
    ops: tuple[str, ...] | None  # operator names of the model, None when the payload is not the model


def _facts(session: Session, pkg: Package, cache: dict[str, _PackageFacts]) -> _PackageFacts:
    facts = cache.get(pkg.id)
    if facts is None:
        blob = session.get(PackageBlob, pkg.id)
        data = blob.data if blob is not None else b""
        manifest = parse_unverified(data[:MANIFEST_SIZE])  # verified when it was stored
        ops = None
        if manifest.payload_encoding == ENC_RAW:
            try:
                ops = parse_model(data[MANIFEST_SIZE:]).operators
            except (SigningError, ValueError):
                ops = None  # checked at upload; nothing more to predict from
        facts = _PackageFacts(manifest, ops)
        cache[pkg.id] = facts
    return facts


def device_config(device: Device) -> DeviceConfig | None:
    """The device's install policy configuration from its capabilities and reported state."""
    caps = device.capabilities
    if not caps:
        return None
    reported = device.reported or {}
    active = devsvc.active_slot(reported)
    sequence = active.get("sequence") if active else None
    floor = reported.get("security_floor")
    hw, rv = caps.get("hardware_class"), caps.get("runtime_version")
    return DeviceConfig(
        hardware_class=hw if isinstance(hw, int) else device.hardware_class,
        runtime_version=rv if isinstance(rv, int) else (device.runtime_version or 0),
        ram_budget=int(caps["ram_budget"]),
        slot_size=int(caps["slot_size"]),
        sector_size=int(caps.get("sector_size") or DEFAULT_SECTOR_SIZE),
        security_floor=floor if isinstance(floor, int) and not isinstance(floor, bool) else 0,
        active_sequence=sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None,
    )


def encryption_refusal(device: Device, encrypted: bool) -> Refusal | None:
    """An encrypted rollout needs the device's public key (devices provisioned before device keys have
    none) and a runtime that decrypts; a device whose policy requires encryption refuses clear packages
    (capabilities `encryption`, `requires_encryption`, PROTOCOL 4.2)."""
    caps = device.capabilities or {}
    if encrypted and not device.encryption_public_key:
        return Refusal(
            device.id,
            ErrorCode.KEY_UNWRAP,
            "the device has no encryption key (provisioned before device keys): it cannot be sent an"
            " encrypted package",
        )
    if encrypted and caps.get("encryption") is False:
        return Refusal(device.id, ErrorCode.FIELD_RANGE, "the device cannot decrypt packages (flags bit 0)")
    if not encrypted and caps.get("requires_encryption") is True:
        return Refusal(
            device.id,
            ErrorCode.NOT_ENCRYPTED,
            "the device's policy requires encrypted packages: roll out with encrypted",
        )
    return None


def predict(
    session: Session,
    device: Device,
    pkg: Package,
    cache: dict[str, _PackageFacts] | None = None,
    *,
    encrypted: bool = False,
) -> Refusal | None:
    """The refusal `device` would answer to `pkg` (sent encrypted or not), or None (also when its
    capabilities are unknown, or it already runs the package's model: installing it is then nothing to
    do). Encryption is judged on what the server knows even without capabilities (its key)."""
    if device.active_model_sha256 == pkg.model_sha256:
        return None
    refusal = encryption_refusal(device, encrypted)
    if refusal is not None:
        return refusal
    config = device_config(device)
    if config is None:
        return None
    facts = _facts(session, pkg, {} if cache is None else cache)
    try:
        check_policy(facts.manifest, config)
    except PolicyError as exc:
        return Refusal(device.id, exc.code, str(exc.args[0]) if exc.args else exc.name)
    caps = device.capabilities or {}
    if facts.manifest.payload_encoding != ENC_RAW and caps.get("payload_decoder") is False:
        return Refusal(
            device.id,
            ErrorCode.FIELD_RANGE,
            f"payload encoding {facts.manifest.payload_encoding} needs a payload decoder; the device has"
            " none",
        )
    supported = caps.get("ops")
    if caps.get("engine") is not False and isinstance(supported, list) and facts.ops is not None:
        names = {builtin_op_name(code) for code in supported}
        missing = [op for op in facts.ops if op not in names]
        if missing:
            return Refusal(
                device.id, ErrorCode.UNSUPPORTED_OP, f"the device engine lacks {', '.join(missing)}"
            )
    return None


def check_class_limits(session: Session, hardware_class: int, model_size: int, arena_bytes: int) -> None:
    """Invalid (422) naming the limit when a model cannot fit the hardware class's devices (limits the
    class does not set are not checked)."""
    hw = session.get(HardwareClass, hardware_class)
    if hw is None:
        return
    if hw.slot_size is not None and model_size > hw.slot_size - SLOT_MODEL_OFFSET:
        raise Invalid(
            f"TOO_LARGE: the model's {model_size} bytes do not fit hardware class {hardware_class}'s slot"
            f" (slot_size {hw.slot_size}, {max(hw.slot_size - SLOT_MODEL_OFFSET, 0)} usable bytes)"
        )
    if hw.ram_budget is not None and arena_bytes > hw.ram_budget:
        raise Invalid(
            f"ARENA_TOO_LARGE: the model's arena of {arena_bytes} bytes exceeds hardware class"
            f" {hardware_class}'s ram_budget of {hw.ram_budget}"
        )
