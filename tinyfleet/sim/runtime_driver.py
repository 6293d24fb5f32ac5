"""The agent's side of the UART: typed calls that become frames for the real C runtime.

Each call sends one request through a `Transport` and returns the runtime's answer; an ERROR response
becomes `RuntimeFailure` with the runtime's own error code. Nothing here checks a package. The default
transport is `HostTransport` (`simulator.runtime.DeviceRuntime`, the host library behind the frame
handler, exactly what a board's UART would reach); `simulator.qemu_transport.QemuTransport` is the same
contract over the real firmware's UART under QEMU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tinyfleet.device import frames
from tinyfleet.device.runtime import DeviceRuntime, TensorSpec
from tinyfleet.signing.codes import ErrorCode, error_name
from tinyfleet.signing.keys import TrustedKey
from tinyfleet.sim.profiles import DeviceProfile

PHASE_NAMES = {
    frames.Phase.IDLE: "idle",
    frames.Phase.DOWNLOADING: "downloading",
    frames.Phase.DOWNLOADED: "downloaded",
    frames.Phase.TRIAL: "trial",
}
# A received chunk larger than one INSTALL_CHUNK frame is fed in pieces of this size.
FRAME_CHUNK = 1024


class RuntimeFailure(Exception):
    """The runtime refused a request (or the link to it failed): code is from docs/PROTOCOL.md section 2."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{error_name(code)} ({code}): {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class RuntimeState:
    """The runtime's STATE answer, shaped for MQTT `reported` (docs/PROTOCOL.md section 4.2)."""

    raw: frames.DeviceState

    @property
    def phase(self) -> str:
        return PHASE_NAMES[self.raw.phase]

    def active_model_sha256(self) -> str | None:
        slot = self.raw.active
        return slot.model_sha256.hex() if slot is not None and slot.valid else None

    def reported(self) -> dict[str, Any]:
        s = self.raw
        return {
            "runtime_version": s.runtime_version,
            "hardware_class": s.hardware_class,
            "phase": self.phase,
            "active_slot": s.active_slot,
            "security_floor": s.security_floor,
            "download_offset": s.download_offset,
            "last_error": s.last_error,
            "slots": [
                {
                    "valid": slot.valid,
                    "model_name": slot.model_name if slot.valid else "",
                    "version": slot.version_str if slot.valid else "",
                    "model_sha256": slot.model_sha256.hex() if slot.valid else "",
                    "sequence": slot.sequence if slot.valid else 0,
                }
                for slot in s.slots
            ],
        }


class Transport(Protocol):
    """What a driver needs from a device: its UART (one request, one response; a dead link raises
    `frames.ProtocolError`) and its power switch."""

    def request(self, request: frames.Request) -> frames.Response: ...

    def model_io(self) -> tuple[TensorSpec, TensorSpec] | None:
        """The active model's tensors for the sensor code, or None when unknown or none runs."""
        ...

    def arm_power_cut(self, after_ops: int, seed: int) -> None: ...

    def powered_off(self) -> bool: ...

    def power_on(self) -> None:
        """Boot again from the flash after the power went (RAM state starts afresh)."""
        ...

    def close(self) -> None: ...


class HostTransport:
    """One host-library device (`DeviceRuntime`) with its RAM flash, configured from a profile."""

    def __init__(
        self, profile: DeviceProfile, trusted_keys: Sequence[TrustedKey], encryption_key: bytes | None = None
    ) -> None:
        self.runtime = DeviceRuntime(
            hardware_class=profile.hardware_class,
            ram_budget=profile.ram_budget,
            slot_size=profile.slot_size,
            sector_size=profile.sector_size,
            trusted_keys=[(k.key_id, k.public_key) for k in trusted_keys],
            cpu_hz=profile.cpu_hz,
            milli_cycles_per_mac=profile.milli_cycles_per_mac,
            cycles_per_op=profile.cycles_per_op,
            encryption_key=encryption_key,
        )

    def request(self, request: frames.Request) -> frames.Response:
        return self.runtime.request(request)

    def model_io(self) -> tuple[TensorSpec, TensorSpec] | None:
        try:
            return self.runtime.model_io()
        except ValueError:
            return None

    def arm_power_cut(self, after_ops: int, seed: int) -> None:
        self.runtime.cut_power_after(after_ops, seed=seed)

    def powered_off(self) -> bool:
        return bool(self.runtime.is_powered_off())

    def power_on(self) -> None:
        self.runtime.power_on()

    def close(self) -> None:
        self.runtime.close()


class RuntimeDriver:
    """One device's C runtime behind a transport. Without one, a host-library device is built from the
    profile, the trust store and the device's X25519 private key (encrypted packages, PROTOCOL 6)."""

    def __init__(
        self,
        profile: DeviceProfile,
        trusted_keys: Sequence[TrustedKey] = (),
        transport: Transport | None = None,
        encryption_key: bytes | None = None,
    ) -> None:
        self.profile = profile
        self.transport: Transport = transport or HostTransport(profile, trusted_keys, encryption_key)
        # A host-library device decrypts when it has the key; a transport says so itself (a QEMU board
        # needs the key in its provisioning record and the ENCRYPTION=1 firmware).
        if transport is None:
            self.can_decrypt = encryption_key is not None
        else:
            self.can_decrypt = bool(getattr(transport, "decrypts", False))
        self._begun_manifest: bytes | None = None  # what this device's agent last began installing
        self.boots = 1  # power-ons: the runtime's RAM counters (TELEMETRY) restart at each

    def _call(self, request: frames.Request) -> frames.Response:
        try:
            response = self.transport.request(request)
        except frames.ProtocolError as exc:
            raise RuntimeFailure(ErrorCode.BAD_MESSAGE, f"runtime link: {exc}") from None
        err = response.error()
        if err is not None:
            raise RuntimeFailure(err.code, err.detail)
        return response

    def state(self) -> RuntimeState:
        return RuntimeState(frames.parse_state(self._call(frames.state()).payload))

    def install_begin(self, manifest: bytes, wrap: bytes | None = None) -> int:
        """Begin (or resume) installing the package with this manifest; returns the payload offset the
        runtime wants next. Resuming is only attempted for the manifest this agent began itself: the
        runtime keeps the bytes, the agent remembers which package they belong to. An encrypted package
        needs its content key `wrap` (80 bytes) after every begin, a resuming one too: the runtime keeps
        the key in RAM only (PROTOCOL 3.2, INSTALL_KEY)."""
        st = self.state().raw
        if self._begun_manifest == manifest and st.phase in (
            frames.Phase.DOWNLOADING,
            frames.Phase.DOWNLOADED,
        ):
            if st.phase == frames.Phase.DOWNLOADED:
                return st.download_size
            if wrap is None:
                return st.download_offset
        progress = frames.parse_progress(self._call(frames.install_begin(manifest)).payload)
        self._begun_manifest = manifest
        if wrap is not None:
            progress = frames.parse_progress(self._call(frames.install_key(wrap)).payload)
        return progress.offset

    def install_chunk(self, offset: int, data: bytes) -> int:
        """Feed payload bytes at a payload offset; returns the runtime's new resume offset."""
        progress = frames.Progress(offset, 0)
        for start in range(0, len(data), FRAME_CHUNK):
            piece = data[start : start + FRAME_CHUNK]
            progress = frames.parse_progress(self._call(frames.install_chunk(offset + start, piece)).payload)
        return progress.offset

    def install_end(self) -> None:
        if self.state().raw.phase == frames.Phase.DOWNLOADED:
            return  # already verified before a power cut
        self._call(frames.install_end())

    def activate(self) -> None:
        self._call(frames.activate())

    def selftest(self) -> None:
        self._call(frames.selftest())

    def confirm(self) -> None:
        self._call(frames.confirm())
        self._begun_manifest = None

    def revert(self) -> None:
        self._call(frames.revert())

    def infer(self, data: bytes) -> frames.InferResult:
        """Write data at the start of the input tensor and run one inference on the active model. An input
        larger than one frame (micro_speech: 1960 bytes) goes in slices; only the last one runs."""
        step = frames.MAX_INFER_INPUT
        offset = 0
        while len(data) - offset > step:
            self._call(frames.infer(data[offset : offset + step], offset, False))
            offset += step
        result = frames.parse_infer(self._call(frames.infer(data[offset:], offset, True)).payload)
        if result is None:
            raise RuntimeFailure(ErrorCode.BAD_MESSAGE, "INFER with run answered without an output")
        return result

    def model_io(self) -> tuple[TensorSpec, TensorSpec] | None:
        """The active model's input and output tensors for the device's sensor code; None if it has none
        the engine can run (or the transport cannot tell)."""
        return self.transport.model_io()

    def telemetry(self) -> frames.Telemetry:
        """The runtime's counters and the active model's inference telemetry (PROTOCOL 3.2.6)."""
        return frames.parse_telemetry(self._call(frames.telemetry()).payload)

    # ----- power -----------------------------------------------------------------------------------------

    def arm_power_cut(self, after_ops: int, seed: int = 1) -> None:
        self.transport.arm_power_cut(after_ops, seed)

    def powered_off(self) -> bool:
        return self.transport.powered_off()

    def power_on_and_boot(self) -> None:
        self.boots += 1
        self.transport.power_on()

    def close(self) -> None:
        self.transport.close()
