"""Encrypted installs on the Cortex-M4 firmware under QEMU (docs/PROTOCOL.md section 6): the board built
with decryption (`make ENCRYPTION=1`) gets its X25519 key in its provisioning record (format 2), takes the
committed encrypted vectors (tests/vectors/encrypted, made by agent_firmware/tests/make_encrypted_packages.py)
and keeps the model encrypted at rest (6.6): a dump of its flash shows no window of either model, while a
board fed the same model in clear shows it. Tampered ciphertext is refused before activation, power cuts
at 20 flash operations spread over an encrypted delta's install leave a complete model active, and the
default firmware (no decryption, within 24 KiB) refuses an encrypted package cleanly even with a key
provisioned."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.flash_dump import shows
from tests.support.paths import VECTORS
from tests.support.qemu_device import CHUNK, DEVICE, install_and_confirm, vector
from tinyfleet.device import frames
from tinyfleet.signing.manifest import MANIFEST_SIZE
from tinyfleet.sim.qemu import PowerCut, Provision, QemuDevice, build_firmware, missing_tools

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.skipif(missing_tools() is not None, reason=f"QEMU port: {missing_tools()}"),
]

ENC = VECTORS / "encrypted"


def encrypted(stem: str) -> tuple[bytes, bytes]:
    return (ENC / f"{stem}.tfpkg").read_bytes(), (ENC / f"{stem}.wrap").read_bytes()


def provision(with_key: bool = True) -> Provision:
    return Provision(
        public_keys=[bytes.fromhex((VECTORS / "key_trusted.pub").read_text().strip())],
        hardware_class=DEVICE["hardware_class"],
        ram_budget=DEVICE["ram_budget"],
        slot_size=DEVICE["slot_size"],
        encryption_key=(ENC / "device.key").read_bytes() if with_key else None,
    )


def install_encrypted(dev: QemuDevice, stem: str) -> None:
    pkg, wrap = encrypted(stem)
    assert dev.upload(pkg, CHUNK, wrap=wrap).phase == frames.Phase.DOWNLOADED
    assert frames.parse_phase(dev.call(frames.activate())).phase == frames.Phase.TRIAL
    dev.call(frames.selftest())
    assert frames.parse_phase(dev.call(frames.confirm())).phase == frames.Phase.IDLE


def finish(dev: QemuDevice) -> None:
    """Bring a board whose install of delta_good was cut back to it confirmed, from whatever phase."""
    phase = dev.state().phase
    if phase == frames.Phase.TRIAL:
        dev.call(frames.confirm())  # the self-test since this boot passed
    elif phase == frames.Phase.DOWNLOADED:
        dev.call(frames.activate())
        dev.call(frames.selftest())
        dev.call(frames.confirm())
    elif phase == frames.Phase.DOWNLOADING or active_sequence(dev) == 5:
        install_encrypted(dev, "delta_good")  # begin resumes; the wrap is sent again


def active_sequence(dev: QemuDevice) -> int | None:
    st = dev.state()
    return None if st.active is None else st.active.sequence


@pytest.fixture(scope="module")
def enc_firmware() -> Path:
    if not DEVICE:
        pytest.skip("tests/vectors/device.json missing")
    return build_firmware("all", encryption=True)


def test_encrypted_installs_leave_no_clear_model_in_the_flash(enc_firmware: Path, tmp_path: Path) -> None:
    model, update = vector("model.tflite"), vector("model_update.tflite")
    with QemuDevice(provision(), tmp_path / "clear", enc_firmware) as dev:
        install_and_confirm(dev, vector("good_active.tfpkg"))
        dev.power_off()
        assert shows(dev.read_flash(), model)  # the check can fail: a clear install shows its model
    with QemuDevice(provision(), tmp_path / "enc", enc_firmware) as dev:
        install_encrypted(dev, "good_active")
        tampered, wrap = encrypted("delta_good")
        bad = bytearray(tampered)
        bad[-5] ^= 0x10
        with pytest.raises(frames.DeviceError) as refused:
            dev.upload(bytes(bad), CHUNK, wrap=wrap)
        assert refused.value.name in ("DIGEST_MISMATCH", "DELTA_CORRUPT")  # ciphertext digest or decoder
        assert active_sequence(dev) == 5
        install_encrypted(dev, "delta_good")  # its base is read back from flash through the storage key
        dev.power_cycle()
        assert active_sequence(dev) == 6
        dev.call(frames.selftest())  # integrity re-check from flash after a reboot
        dev.power_off()
        image = dev.read_flash()  # flash.bin as saved at power-off
    assert not shows(image, model) and not shows(image, update)


def big_encrypted_package(model_size: int) -> tuple[bytes, bytes]:
    """An encrypted package (and its wrap for the test device) of a valid model padded to model_size
    bytes, signed with the trusted test key as the committed vectors are."""
    import hashlib

    from tinyfleet.signing import encryption as enc
    from tinyfleet.signing.keys import private_key_from_seed
    from tinyfleet.signing.package import build_package

    model = vector("model.tflite")
    model += bytes(model_size - len(model))  # a flatbuffer is read from its root: padding is ignored
    signer = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: trusted").digest())
    clear = build_package(
        model,
        signer,
        name="big",
        version="2.0.0",
        sequence=6,
        security_counter=3,
        hardware_class=DEVICE["hardware_class"],
        min_runtime_version=DEVICE["runtime_version_str"],
    )
    key = enc.new_content_key()
    sealed = enc.encrypt_package(clear, key, signer)
    public = enc.public_key_of((ENC / "device.key").read_bytes())
    return sealed, enc.wrap_content_key(key, public, sealed[:MANIFEST_SIZE])


@pytest.fixture(scope="module")
def enc_engine_firmware() -> Path:
    if not DEVICE:
        pytest.skip("tests/vectors/device.json missing")
    return build_firmware("engine", encryption=True)


def test_an_encrypted_model_larger_than_the_model_ram_is_refused_before_writing(
    enc_engine_firmware: Path, tmp_path: Path
) -> None:
    """The ENCRYPTION=1 engine board runs a model encrypted at rest from a 64 KiB model RAM (6.6):
    a bigger one is refused at begin with MODEL_RAM_TOO_SMALL, nothing written, the board still idle
    with its model; one that fits the RAM (in a slot big enough for both) installs and self-tests."""
    roomy = replace(provision(), slot_size=256 * 1024)
    with QemuDevice(roomy, tmp_path, enc_engine_firmware, gdb=True) as dev:
        install_encrypted(dev, "good_active")
        dev.cut_at_flash_op(None)  # counts flash operations from here
        sealed, wrap = big_encrypted_package(64 * 1024 + 16)
        with pytest.raises(frames.DeviceError) as refused:
            dev.upload(sealed, 1024, wrap=wrap)
        assert refused.value.name == "MODEL_RAM_TOO_SMALL"
        st = dev.state()
        assert st.phase == frames.Phase.IDLE and st.last_error == frames.ErrorCode.MODEL_RAM_TOO_SMALL
        assert dev.flash_ops == 0 and active_sequence(dev) == 5
        fits, fits_wrap = big_encrypted_package(64 * 1024)
        assert dev.upload(fits, 1024, wrap=fits_wrap).phase == frames.Phase.DOWNLOADED
        assert frames.parse_phase(dev.call(frames.activate())).phase == frames.Phase.TRIAL
        dev.call(frames.selftest())  # decrypted into the model RAM, digest-checked, run by the engine
        assert frames.parse_phase(dev.call(frames.confirm())).phase == frames.Phase.IDLE
        assert active_sequence(dev) == 6


def test_default_firmware_refuses_an_encrypted_package_cleanly(tmp_path: Path) -> None:
    if not DEVICE:
        pytest.skip("tests/vectors/device.json missing")
    with QemuDevice(provision(), tmp_path, build_firmware("all")) as dev:
        pkg, _ = encrypted("good")
        with pytest.raises(frames.DeviceError) as refused:
            dev.call(frames.install_begin(pkg[:292]))
        assert refused.value.name == "FIELD_RANGE"
        assert dev.state().phase == frames.Phase.IDLE
        install_and_confirm(dev, vector("good_active.tfpkg"))  # the keyed record is read: clear installs work
        assert active_sequence(dev) == 5


def test_power_cuts_during_an_encrypted_delta_install(enc_firmware: Path, tmp_path: Path) -> None:
    with QemuDevice(provision(), tmp_path / "setup", enc_firmware) as dev:
        install_encrypted(dev, "good_active")
        dev.power_off()
    base = (tmp_path / "setup" / "flash.bin").read_bytes()

    def device_from_base(name: str) -> QemuDevice:
        (tmp_path / name).mkdir()
        (tmp_path / name / "flash.bin").write_bytes(base)
        dev = QemuDevice(provision(), tmp_path / name, enc_firmware, gdb=True)
        dev.power_on()
        return dev

    counting = device_from_base("count")
    try:
        counting.cut_at_flash_op(None)
        install_encrypted(counting, "delta_good")
        total = counting.flash_ops
    finally:
        counting.close()
    assert total >= 20
    # 20 cut points spread evenly over the whole install (first and last flash operation included):
    # download, the digest at end, activation and confirm; the host campaign cuts every one of them
    # (agent_firmware/tests/test_powercut_encrypted.c), this checks the firmware on the M4 does the same.
    for n in sorted({1 + (total - 1) * i // 19 for i in range(20)}):
        dev = device_from_base(f"cut{n}")
        try:
            dev.cut_at_flash_op(n)
            with pytest.raises(PowerCut):
                install_encrypted(dev, "delta_good")
            dev.power_on()
            assert active_sequence(dev) in (5, 6)
            dev.call(frames.selftest())  # whichever model is active is complete and decrypts
            finish(dev)
            dev.power_cycle()
            assert active_sequence(dev) == 6 and dev.state().phase == frames.Phase.IDLE
        finally:
            dev.close()
