"""Encrypted installs (docs/PROTOCOL.md section 6) through the host library's UART frames: packages
encrypted and key wraps made here by tinyfleet.signing.encryption, decrypted by the C runtime while it
streams them, and kept encrypted at rest in the slot under the device's storage key (6.6). Every check is
the C runtime's; the dumps are the host library's whole flash image."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.device_frames import (
    DEVICE,
    MANIFEST,
    activate_selftest_confirm,
    call,
    has_engine,
    install,
    new_device,
    ok,
    package,
    slot_bytes,
    state,
)
from tests.support.flash_dump import shows
from tests.support.paths import VECTORS
from tinyfleet.device import frames
from tinyfleet.device.runtime import DeviceRuntime
from tinyfleet.signing import encryption as enc
from tinyfleet.signing.keys import private_key_from_seed

INDEX: dict[str, Any] = json.loads((VECTORS / "index.json").read_text())
SIGNER = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: trusted").digest())
DEVICE_PRIVATE, DEVICE_PUBLIC = enc.generate_device_keypair()


def encrypted(name: str) -> tuple[bytes, bytes]:
    """A golden package encrypted under a fresh content key, and its wrap for DEVICE_PUBLIC."""
    content_key = enc.new_content_key()
    pkg = enc.encrypt_package(package(name), content_key, SIGNER)
    return pkg, enc.wrap_content_key(content_key, DEVICE_PUBLIC, pkg[:MANIFEST])


@pytest.fixture(scope="module")
def setup_image() -> bytes:
    with new_device() as dev:
        assert install(dev, package(DEVICE["setup_package"])) == 0
        activate_selftest_confirm(dev)
        return dev.read_flash()


def _device(setup_image: bytes, **overrides: object) -> DeviceRuntime:
    dev = new_device(encryption_key=DEVICE_PRIVATE, **overrides)
    dev.load_flash(setup_image)
    assert dev.power_on() == 0
    return dev


@pytest.fixture
def device(setup_image: bytes) -> Iterator[DeviceRuntime]:
    with _device(setup_image) as dev:
        yield dev


def _error(dev: DeviceRuntime, msg: frames.Request) -> str:
    err = call(dev, msg).error()
    assert err is not None
    return err.name


@pytest.mark.parametrize(
    "name, model", [("good.tfpkg", "model.tflite"), ("compressed_good.tfpkg", "model_update.tflite"),
                    ("delta_good.tfpkg", "model_update.tflite")],
)  # fmt: skip
def test_encrypted_package_installs_and_its_slot_holds_no_clear_model_bytes(
    device: DeviceRuntime, name: str, model: str
) -> None:
    pkg, wrap = encrypted(name)
    assert pkg[MANIFEST:] != package(name)[MANIFEST:]  # the payload really travels encrypted
    assert install(device, pkg, chunk=333, wrap=wrap) == 0
    activate_selftest_confirm(device)
    st_ = state(device)
    assert st_.active is not None and st_.active.sequence == 6
    clear = (VECTORS / model).read_bytes()
    slot = slot_bytes(device, st_.active_slot)
    assert not shows(slot, clear)  # encrypted at rest (PROTOCOL 6.6)
    # ... exactly as specified: model XOR ChaCha20(storage key, nonce = model_sha256[0..11])
    storage_key = enc.hkdf_sha256(DEVICE_PUBLIC, DEVICE_PRIVATE, b"tinyfleet storage key v1", 32)
    nonce = hashlib.sha256(clear).digest()[:12]
    assert enc.chacha20_xor(storage_key, slot[304 : 304 + len(clear)], nonce=nonce) == clear
    assert device.power_cycle() == 0
    ok(device, frames.selftest())  # re-verified through the storage key after a reboot
    assert state(device).active == st_.active


def test_a_dump_of_a_device_fed_encrypted_packages_shows_no_model_and_a_clear_one_does() -> None:
    model, update = (VECTORS / "model.tflite").read_bytes(), (VECTORS / "model_update.tflite").read_bytes()
    with new_device() as clear_dev:
        assert install(clear_dev, package("good_active.tfpkg")) == 0
        activate_selftest_confirm(clear_dev)
        assert shows(clear_dev.read_flash(), model)  # the check can fail
    with new_device(encryption_key=DEVICE_PRIVATE) as dev:
        assert dev.power_on() == 0
        for name in ("good_active.tfpkg", "delta_good.tfpkg"):  # the delta's base is read back decrypted
            pkg, wrap = encrypted(name)
            assert install(dev, pkg, chunk=250, wrap=wrap) == 0
            activate_selftest_confirm(dev)
        image = dev.read_flash()
        assert not shows(image, model) and not shows(image, update)
        assert state(dev).active.sequence == 6  # type: ignore[union-attr]
        frames.parse_phase(ok(dev, frames.revert()))  # rollback to the encrypted base works too
        assert state(dev).active.sequence == 5  # type: ignore[union-attr]


def test_a_model_encrypted_at_rest_runs_its_self_test_and_inference_from_ram(device: DeviceRuntime) -> None:
    if not has_engine(device):
        pytest.skip("no inference engine in this build")
    selftest = INDEX["selftest"]
    sample = bytes.fromhex(selftest["input_bytes"])
    pkg, wrap = encrypted("good_selftest.tfpkg")
    assert install(device, pkg, wrap=wrap) == 0
    activate_selftest_confirm(device)  # the engine ran the decrypted model and its digest matched
    result = frames.parse_infer(ok(device, frames.infer(sample)))
    assert result is not None and hashlib.sha256(result.output).hexdigest() == selftest["output_sha256"]
    assert device.power_cycle() == 0
    again = frames.parse_infer(ok(device, frames.infer(sample)))
    assert again is not None and again.output == result.output


def test_chunks_wait_for_the_key_and_it_is_needed_again_after_a_power_cycle(device: DeviceRuntime) -> None:
    pkg, wrap = encrypted("good.tfpkg")
    assert _error(device, frames.install_key(wrap)) == "BAD_STATE"  # no download under way
    ok(device, frames.install_begin(pkg[:MANIFEST]))
    assert _error(device, frames.install_chunk(0, pkg[MANIFEST : MANIFEST + 64])) == "BAD_STATE"
    assert frames.parse_progress(ok(device, frames.install_key(wrap))).offset == 0
    ok(device, frames.install_chunk(0, pkg[MANIFEST : MANIFEST + 1000]))
    assert device.power_cycle() == 0
    assert _error(device, frames.install_chunk(1000, pkg[MANIFEST + 1000 : MANIFEST + 1100])) == "BAD_STATE"
    assert install(device, pkg, chunk=500, wrap=wrap) == 0  # begin resumes at 1000, key, rest
    activate_selftest_confirm(device)
    assert state(device).active is not None


def test_a_wrap_of_the_wrong_size_is_a_bad_message(device: DeviceRuntime) -> None:
    pkg, wrap = encrypted("good.tfpkg")
    ok(device, frames.install_begin(pkg[:MANIFEST]))
    assert _error(device, frames.Request(frames.MsgType.INSTALL_KEY, wrap[:79])) == "BAD_MESSAGE"


def test_wrong_device_key_is_key_unwrap(setup_image: bytes) -> None:
    pkg, wrap = encrypted("good.tfpkg")
    other, _ = enc.generate_device_keypair()
    with new_device(encryption_key=other) as dev:
        dev.load_flash(setup_image)
        assert dev.power_on() == 0
        assert install(dev, pkg, wrap=wrap) == frames.ErrorCode.KEY_UNWRAP
        assert state(dev).phase is frames.Phase.DOWNLOADING  # kept: a good wrap may follow


def test_wrap_for_another_package_is_key_unwrap(device: DeviceRuntime) -> None:
    pkg, _ = encrypted("good.tfpkg")
    _, other_wrap = encrypted("compressed_good.tfpkg")
    assert install(device, pkg, wrap=other_wrap) == frames.ErrorCode.KEY_UNWRAP


def test_device_without_a_key_refuses_an_encrypted_package(setup_image: bytes) -> None:
    pkg, wrap = encrypted("good.tfpkg")
    with new_device() as dev:
        dev.load_flash(setup_image)
        assert dev.power_on() == 0
        assert install(dev, pkg, wrap=wrap) == frames.ErrorCode.KEY_UNWRAP
        assert state(dev).phase is frames.Phase.IDLE


@pytest.mark.parametrize("where", [0, 1500, 2751])
def test_tampered_ciphertext_is_refused_before_activation(device: DeviceRuntime, where: int) -> None:
    pkg, wrap = encrypted("good.tfpkg")
    before = state(device)
    tampered = bytearray(pkg)
    tampered[MANIFEST + where] ^= 0x20
    assert install(device, bytes(tampered), chunk=700, wrap=wrap) == frames.ErrorCode.DIGEST_MISMATCH
    assert _error(device, frames.activate()) == "BAD_STATE"
    after = state(device)
    assert after.active_slot == before.active_slot and after.active is not None
    assert after.active.sequence == DEVICE["active_sequence"]


def test_require_encryption_refuses_a_clear_package(setup_image: bytes) -> None:
    with _device(setup_image, require_encryption=True) as dev:
        assert install(dev, package("good.tfpkg")) == frames.ErrorCode.NOT_ENCRYPTED
        st_ = state(dev)
        assert st_.phase is frames.Phase.IDLE and st_.last_error == frames.ErrorCode.NOT_ENCRYPTED
        pkg, wrap = encrypted("good.tfpkg")
        assert install(dev, pkg, wrap=wrap) == 0
