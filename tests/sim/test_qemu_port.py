"""The Cortex-M4 firmware under QEMU mps2-an386: boot, install over UART0, power cycles and cuts.

The device is provisioned like `tests/vectors/device.json` (hardware class 7, 16 KiB slots, the vectors'
trusted key), so the committed package vectors are judged by the firmware exactly as by the host runtime.
Skipped when qemu-system-arm or arm-none-eabi-gcc is missing.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.paths import REPO, VECTORS
from tests.support.qemu_device import CHUNK, DEVICE, install_and_confirm, vector
from tinyfleet.device import frames
from tinyfleet.sim.qemu import (
    DEFAULT_SLOT_SIZE,
    MANIFEST_SIZE,
    PowerCut,
    Provision,
    QemuDevice,
    build_firmware,
    missing_tools,
)

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(missing_tools() is not None, reason=f"QEMU port: {missing_tools()}"),
]


def manifest_model_sha256(package: bytes) -> bytes:
    return package[108:140]


def manifest_sequence(package: bytes) -> int:
    return int.from_bytes(package[48:52], "little")


@pytest.fixture(scope="module")
def firmware() -> Path:
    if not DEVICE:
        pytest.skip("tests/vectors/device.json missing")
    return build_firmware()


@pytest.fixture
def provision() -> Provision:
    public_key = bytes.fromhex((VECTORS / "key_trusted.pub").read_text().strip())
    return Provision(
        public_keys=[public_key],
        hardware_class=DEVICE["hardware_class"],
        ram_budget=DEVICE["ram_budget"],
        slot_size=DEVICE["slot_size"],
        max_trial_boots=1,
    )


@pytest.fixture
def device(firmware: Path, provision: Provision, tmp_path: Path) -> Iterator[QemuDevice]:
    dev = QemuDevice(provision, tmp_path, firmware)
    dev.power_on()
    try:
        yield dev
    finally:
        dev.close()


def slot_bytes(dev: QemuDevice, slot: int) -> bytes:
    start = dev.provision.slot_address(slot)
    return dev.read_flash()[start : start + dev.provision.slot_size]


def test_boot_and_hello(device: QemuDevice) -> None:
    hello = device.hello()
    assert hello.protocol_version == frames.PROTOCOL_VERSION
    assert hello.hardware_class == DEVICE["hardware_class"]
    assert hello.runtime_version == DEVICE["runtime_version"]
    assert hello.ram_budget == DEVICE["ram_budget"]
    assert hello.slot_size == DEVICE["slot_size"]
    assert hello.max_body == frames.MAX_BODY
    assert not hello.has_inference  # firmware.elf has no engine
    with pytest.raises(frames.DeviceError) as refused:
        device.call(frames.infer(b"\x00"))
    assert refused.value.code == 129  # UNSUPPORTED_OP
    state = device.state()
    assert state.phase == frames.Phase.IDLE
    assert state.active_slot is None
    assert state.security_floor == 0


@dataclass(frozen=True)
class DamagedProvision(Provision):
    """A provisioning record spoiled after encoding: `flip` is a byte offset to corrupt; with
    `fix_crc` the CRC is recomputed so that only the deeper check (key id) can catch it."""

    flip: int = 0
    fix_crc: bool = False

    def encode(self) -> bytes:
        record = bytearray(super().encode())
        record[self.flip] ^= 0x01
        if self.fix_crc:
            end = 24 + 40 * len(self.public_keys)
            record[end : end + 4] = zlib.crc32(record[:end]).to_bytes(4, "little")
        return bytes(record)


@pytest.mark.parametrize(
    ("flip", "fix_crc"), [(30, False), (30, True), (0, False)], ids=["crc", "key-id", "magic"]
)
def test_a_damaged_provisioning_record_trusts_no_key(
    firmware: Path, provision: Provision, tmp_path: Path, flip: int, fix_crc: bool
) -> None:
    # Without a valid record the firmware falls back to the board's default layout (512 KiB slots).
    damaged = DamagedProvision(provision.public_keys, hardware_class=7, flip=flip, fix_crc=fix_crc)
    with QemuDevice(damaged, tmp_path, firmware) as dev:
        hello = dev.hello()
        assert hello.hardware_class == 0
        assert hello.slot_size == DEFAULT_SLOT_SIZE
        with pytest.raises(frames.DeviceError) as refused:
            dev.call(frames.install_begin(vector("good_active.tfpkg")[:MANIFEST_SIZE]))
        assert refused.value.code == 4  # UNKNOWN_KEY: nothing is trusted
        assert dev.state().active_slot is None


def test_line_noise_gets_a_frame_error_and_the_link_recovers(device: QemuDevice) -> None:
    device.send_raw(b"\x00\x05garbage\x01\x02\x00")
    event = device.recv_frame()
    assert event.body is not None
    response = frames.decode_message(event.body)
    assert response.request_id == 0
    err = response.error()
    assert err is not None and err.code in (frames.FRAME_CRC, frames.FRAME_DECODE)
    assert device.hello().hardware_class == DEVICE["hardware_class"]


def test_install_confirm_survives_power_cycles(device: QemuDevice) -> None:
    active = vector("good_active.tfpkg")
    first = install_and_confirm(device, active)
    device.power_cycle()
    state = device.state()
    assert state.phase == frames.Phase.IDLE
    assert state.active_slot == first
    assert state.security_floor == DEVICE["security_floor"]
    assert state.slots[first].valid
    assert state.slots[first].sequence == DEVICE["active_sequence"]
    assert state.slots[first].model_sha256 == manifest_model_sha256(active)

    upgrade = vector("good.tfpkg")
    second = install_and_confirm(device, upgrade)
    assert second != first
    device.power_cycle()
    state = device.state()
    assert state.phase == frames.Phase.IDLE
    assert state.active_slot == second
    assert state.slots[second].model_sha256 == manifest_model_sha256(upgrade)
    assert state.slots[second].sequence == manifest_sequence(upgrade)
    # The model bytes in flash are the package's payload, at TFA_SLOT_MODEL_OFFSET in the slot.
    model = upgrade[MANIFEST_SIZE:]
    assert slot_bytes(device, second)[304 : 304 + len(model)] == model
    assert device.boots == 3


def test_tampered_packages_are_refused_and_the_active_slot_is_untouched(device: QemuDevice) -> None:
    active_slot = install_and_confirm(device, vector("good_active.tfpkg"))
    before = slot_bytes(device, active_slot)

    # A signed field changed after signing: refused at INSTALL_BEGIN, before any payload.
    tampered = bytearray(vector("good.tfpkg"))
    tampered[40] ^= 0x01  # version_major
    with pytest.raises(frames.DeviceError) as refused:
        device.call(frames.install_begin(bytes(tampered[:MANIFEST_SIZE])))
    assert refused.value.code == 5  # BAD_SIGNATURE

    # Authentic manifest, payload changed: refused at INSTALL_END by the payload digest.
    with pytest.raises(frames.DeviceError) as refused:
        device.upload(vector("payload_digest.tfpkg"), CHUNK)
    assert refused.value.code == 6  # DIGEST_MISMATCH

    # A payload byte flipped in flight on a good package: the same refusal.
    flipped = bytearray(vector("good.tfpkg"))
    flipped[MANIFEST_SIZE + 100] ^= 0x80
    with pytest.raises(frames.DeviceError) as refused:
        device.upload(bytes(flipped), CHUNK)
    assert refused.value.code == 6

    assert slot_bytes(device, active_slot) == before
    state = device.state()
    assert state.phase == frames.Phase.IDLE
    assert state.active_slot == active_slot
    assert state.slots[active_slot].valid
    with pytest.raises(frames.DeviceError) as refused:
        device.call(frames.activate())
    assert refused.value.code == 39  # BAD_STATE: nothing downloaded to activate


def begin_refusals() -> list[tuple[str, int]]:
    """Vectors (parse and policy layers) that the device refuses at INSTALL_BEGIN from the manifest."""
    index = VECTORS / "index.json"
    if not index.exists():
        return []
    entries = json.loads(index.read_text()).get("vectors", [])
    return [
        (e["file"], e["code"])
        for e in entries
        if e["layer"] in ("parse", "policy") and e["code"] not in (0, 6, 7) and e["size"] >= MANIFEST_SIZE
    ]


def test_vectors_refused_at_install_begin_with_the_host_runtime_codes(device: QemuDevice) -> None:
    cases = begin_refusals()
    if not cases:
        pytest.skip("tests/vectors/index.json has no begin-time refusals")
    install_and_confirm(device, vector(DEVICE["setup_package"]))
    wrong = []
    for name, code in cases:
        response = device.request(frames.install_begin(vector(name)[:MANIFEST_SIZE]))
        err = response.error()
        if err is None or err.code != code:
            wrong.append(f"{name}: expected {code}, got {err.code if err else 'OK'}")
    assert not wrong, wrong
    assert device.state().phase == frames.Phase.IDLE


def assert_active_model_intact(dev: QemuDevice, allowed: tuple[bytes, ...]) -> int:
    """The active slot holds the model of one of the `allowed` packages (same sequence and digest), and
    its bytes in flash hash to that digest. Returns the active sequence."""
    state = dev.state()
    assert state.active_slot is not None, state
    slot = state.slots[state.active_slot]
    assert slot.valid
    assert (slot.sequence, slot.model_sha256) in [
        (manifest_sequence(p), manifest_model_sha256(p)) for p in allowed
    ]
    model = slot_bytes(dev, state.active_slot)[304 : 304 + slot.model_size]
    assert hashlib.sha256(model).digest() == slot.model_sha256
    return slot.sequence


def finish_install(dev: QemuDevice, package: bytes) -> None:
    """Drive the device from wherever a cut left it to the new model confirmed."""
    state = dev.state()
    if state.phase == frames.Phase.TRIAL:
        dev.call(frames.selftest())
        dev.call(frames.confirm())
    elif state.active is None or state.active.sequence != manifest_sequence(package):
        install_and_confirm(dev, package)


# Where the power is cut: which request is on the wire, and how long after sending it (seconds).
CUT_POINTS = {
    "chunk-at-once": ("chunk", 0.0),
    "chunk-2ms": ("chunk", 0.002),
    "chunk-10ms": ("chunk", 0.01),
    "install-end": ("end", 0.001),
    "activate": ("activate", 0.0005),
    "confirm": ("confirm", 0.0005),
}


@pytest.mark.parametrize("cut_point", list(CUT_POINTS))
def test_power_cut_keeps_a_complete_model_active(device: QemuDevice, cut_point: str) -> None:
    old, new = vector("good_active.tfpkg"), vector("good.tfpkg")
    install_and_confirm(device, old)
    payload = new[MANIFEST_SIZE:]
    step, delay = CUT_POINTS[cut_point]
    device.call(frames.install_begin(new[:MANIFEST_SIZE]))
    if step == "chunk":
        for offset in range(0, 4 * CHUNK, CHUNK):
            device.call(frames.install_chunk(offset, payload[offset : offset + CHUNK]))
        request = frames.install_chunk(4 * CHUNK, payload[4 * CHUNK : 5 * CHUNK])
    else:
        for offset in range(0, len(payload), CHUNK):
            device.call(frames.install_chunk(offset, payload[offset : offset + CHUNK]))
        if step in ("activate", "confirm"):
            device.call(frames.install_end())
        if step == "confirm":
            device.call(frames.activate())
            device.call(frames.selftest())
        request = {"end": frames.install_end(), "activate": frames.activate(), "confirm": frames.confirm()}[
            step
        ]
    # No answer is awaited: the firmware may be receiving, hashing or programming the state record.
    device.cut_power(after_bytes=frames.encode_frame(request.encode(0xBEEF)), delay=delay)
    device.power_on()

    # An incomplete download can never become active; after a later cut either model may be.
    assert_active_model_intact(device, (old,) if step == "chunk" else (old, new))
    # Whatever the cut left (download to resume, trial, done), the install completes and persists.
    finish_install(device, new)
    device.power_cycle()
    assert assert_active_model_intact(device, (new,)) == manifest_sequence(new)
    assert device.state().phase == frames.Phase.IDLE


def test_unconfirmed_trial_reverts_after_reboots(device: QemuDevice) -> None:
    old = vector("good_active.tfpkg")
    old_slot = install_and_confirm(device, old)
    device.upload(vector("good.tfpkg"), CHUNK)
    assert frames.parse_phase(device.call(frames.activate())).phase == frames.Phase.TRIAL
    # Power lost before confirm, more times than max_trial_boots allows: back to the confirmed model.
    for _ in range(device.provision.max_trial_boots + 1):
        device.power_cycle()
    state = device.state()
    assert state.phase == frames.Phase.IDLE
    assert state.active_slot == old_slot
    assert state.slots[old_slot].model_sha256 == manifest_model_sha256(old)


@pytest.fixture(scope="module")
def engine_firmware() -> Path:
    if not DEVICE:
        pytest.skip("tests/vectors/device.json missing")
    return build_firmware("engine")


def test_engine_build_runs_the_manifest_selftest_on_the_m4(
    engine_firmware: Path, provision: Provision, tmp_path: Path
) -> None:
    """The trial self-test runs the model on the Cortex-M4 and compares with the digest TFLM computed."""
    with QemuDevice(provision, tmp_path, engine_firmware) as dev:
        old_slot = install_and_confirm(dev, vector("good_active.tfpkg"))

        dev.upload(vector("selftest_wrong_digest.tfpkg"), CHUNK)
        dev.call(frames.activate())
        with pytest.raises(frames.DeviceError) as failed:
            dev.call(frames.selftest())
        assert failed.value.code == 42  # SELFTEST_FAILED
        state = dev.state()
        assert state.phase == frames.Phase.IDLE
        assert state.active_slot == old_slot  # reverted by the runtime itself

        good = vector("good_selftest.tfpkg")
        new_slot = install_and_confirm(dev, good)
        dev.power_cycle()
        state = dev.state()
        assert state.active_slot == new_slot
        assert state.slots[new_slot].sequence == manifest_sequence(good)


def tflm_outputs(model: bytes, inputs: list[bytes]) -> list[bytes] | None:
    """TensorFlow Lite Micro's reference output bytes for each int8 input, or None without tflite_micro."""
    try:
        import numpy as np
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        return None
    interpreter = runtime.Interpreter.from_bytes(model)
    shape = interpreter.get_input_details(0)["shape"]
    outputs = []
    for data in inputs:
        interpreter.set_input(np.frombuffer(data, dtype=np.int8).reshape(shape), 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).tobytes())
    return outputs


def test_engine_build_infers_like_tflm_on_the_m4(
    engine_firmware: Path, provision: Provision, tmp_path: Path
) -> None:
    package = vector("good_active.tfpkg")
    model = package[MANIFEST_SIZE:]
    inputs = [
        bytes([0] * 8),
        bytes(range(8)),
        bytes((i * 37 + 11) & 0xFF for i in range(8)),
        bytes([0x80] * 8),
    ]
    expected = tflm_outputs(model, inputs)
    if expected is None:
        pytest.skip("tflite_micro (the reference interpreter) is not installed")
    with QemuDevice(provision, tmp_path, engine_firmware) as dev:
        assert dev.hello().has_inference
        with pytest.raises(frames.DeviceError) as refused:
            dev.call(frames.infer(inputs[0]))
        assert refused.value.code == 39  # BAD_STATE: no active model yet
        install_and_confirm(dev, package)
        for data, want in zip(inputs, expected, strict=True):
            result = frames.parse_infer(dev.call(frames.infer(data)))
            assert result is not None
            assert result.output == want
        with pytest.raises(frames.DeviceError) as refused:
            dev.call(frames.infer(b"\x01" * 9))  # one byte more than the input tensor
        assert refused.value.code == 40  # BAD_OFFSET


def test_garbage_in_the_state_area_is_reported_and_the_device_recovers(device: QemuDevice) -> None:
    install_and_confirm(device, vector("good_active.tfpkg"))
    device.power_off()
    image = bytearray(device.flash_path.read_bytes())
    image[: 2 * 4096] = bytes((i * 73 + 5) & 0xFF for i in range(2 * 4096))  # both state sectors
    device.flash_path.write_bytes(bytes(image))
    device.power_on()
    state = device.state()
    assert state.last_error == 66  # STATE_CORRUPT, visible to the host
    assert state.active_slot is None  # no trustworthy record: nothing is run
    # The device is still usable: a fresh install works and persists.
    slot = install_and_confirm(device, vector("good_active.tfpkg"))
    device.power_cycle()
    assert device.state().active_slot == slot


def test_power_cut_before_every_flash_operation_of_an_install(
    firmware: Path, provision: Provision, tmp_path: Path
) -> None:
    """Deterministic sweep on the M4 binary: QEMU's gdbstub breaks on the flash driver's program and
    erase entry points, and the power is cut just before the n-th flash operation of a whole install
    (begin, chunks, end, activate, self-test, confirm), for every n."""
    old, new = vector("good_active.tfpkg"), vector("good.tfpkg")
    with QemuDevice(provision, tmp_path / "setup", firmware) as dev:
        install_and_confirm(dev, old)
        dev.power_off()
    base = (tmp_path / "setup" / "flash.bin").read_bytes()

    def device_from_base(name: str) -> QemuDevice:
        (tmp_path / name).mkdir()
        (tmp_path / name / "flash.bin").write_bytes(base)
        dev = QemuDevice(provision, tmp_path / name, firmware, gdb=True)
        dev.power_on()
        return dev

    counting = device_from_base("count")
    try:
        counting.cut_at_flash_op(None)
        install_and_confirm(counting, new)
        total = counting.flash_ops
    finally:
        counting.close()
    assert total >= 10  # erases, manifest, chunks, state records

    phases = set()
    for n in range(1, total + 1):
        dev = device_from_base(f"cut{n}")
        try:
            dev.cut_at_flash_op(n)
            with pytest.raises(PowerCut):
                install_and_confirm(dev, new)
            dev.power_on()
            phases.add(dev.state().phase)
            # An incomplete download never becomes active; from the activation record on, the new one.
            assert_active_model_intact(dev, (old, new))
            finish_install(dev, new)
            dev.power_cycle()
            assert assert_active_model_intact(dev, (new,)) == manifest_sequence(new)
        finally:
            dev.close()
    assert frames.Phase.DOWNLOADING in phases  # the sweep did cut in the middle of downloads


def _install_compressed_then_delta(
    device: QemuDevice, name: str, base: bytes, new: bytes, versions: tuple[int, ...] | None = None
) -> tuple[bytes, bytes]:
    """`base` as a compressed package (sequence 10), then `new` as a delta against it (11), each installed,
    confirmed and checked byte for byte in its slot after a power cycle; returns the two payloads."""
    from tinyfleet.signing import delta as codec
    from tinyfleet.signing.keys import load_private_key
    from tinyfleet.signing.package import build_package

    key = load_private_key(VECTORS / "key_trusted.pem")
    chosen = {} if versions is None else {"versions": versions}
    full_stream, delta_stream = codec.encode(base, **chosen), codec.encode(new, base, **chosen)
    common = {
        "name": name,
        "security_counter": 3,
        "hardware_class": DEVICE["hardware_class"],
        "min_runtime_version": "0.1.0",
    }
    compressed = build_package(
        base, key, version="1.0.0", sequence=10, payload=full_stream,
        payload_encoding=codec.ENCODING_COMPRESSED, **common,
    )  # fmt: skip
    delta = build_package(
        new, key, version="1.1.0", sequence=11, payload=delta_stream,
        payload_encoding=codec.ENCODING_DELTA, delta_base_sha256=hashlib.sha256(base).digest(), **common,
    )  # fmt: skip
    assert len(delta) < len(compressed) < MANIFEST_SIZE + len(base) + 64
    for package, model in ((compressed, base), (delta, new)):
        slot = install_and_confirm(device, package)
        device.power_cycle()
        state = device.state()
        assert state.active_slot == slot
        assert state.slots[slot].model_sha256 == hashlib.sha256(model).digest()
        assert slot_bytes(device, slot)[304 : 304 + len(model)] == model
    return full_stream, delta_stream


def test_compressed_and_delta_packages_decode_on_the_m4(device: QemuDevice, shared_models: Path) -> None:
    """Real successive model versions (TFLM's hello_world history): a compressed full model, then a delta
    against it; the M4 decodes each into the inactive slot, and the bytes are the new model's."""
    pairs = shared_models / "pairs"
    base = (pairs / "hello_world_int8.1.tflite").read_bytes()
    new = (pairs / "hello_world_int8.2.tflite").read_bytes()
    _install_compressed_then_delta(device, "hello-world", base, new)


def test_version_6_packages_decode_on_the_m4(device: QemuDevice) -> None:
    """Format version 6 (adaptive frequency symbols) on the real firmware: the example model compressed,
    then its next version as a delta against it, each stream version 6 only."""
    from tinyfleet.signing.delta import FORMAT_SYMBOLS

    base = (REPO / "examples" / "vibration-1.0.0.tflite").read_bytes()
    new = (REPO / "examples" / "vibration-1.1.0.tflite").read_bytes()
    streams = _install_compressed_then_delta(device, "vibration", base, new, (FORMAT_SYMBOLS,))
    assert [s[2] for s in streams] == [FORMAT_SYMBOLS, FORMAT_SYMBOLS]
