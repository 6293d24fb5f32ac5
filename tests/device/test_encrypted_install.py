"""Encrypted installs (docs/PROTOCOL.md section 6) through the host library's UART frames: packages
encrypted and key wraps made here by tinyfleet.signing.encryption, decrypted by the C runtime while it
streams them into the slot. Every check is the C runtime's."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tests.support.device_frames import (
    DEVICE,
    MANIFEST,
    activate_selftest_confirm,
    call,
    install,
    new_device,
    ok,
    package,
    slot_bytes,
    state,
)
from tests.support.paths import VECTORS
from tinyfleet.device import frames
from tinyfleet.device.runtime import DeviceRuntime
from tinyfleet.signing import encryption as enc
from tinyfleet.signing.keys import private_key_from_seed

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
def test_encrypted_package_installs_and_the_slot_holds_the_clear_model(
    device: DeviceRuntime, name: str, model: str
) -> None:
    pkg, wrap = encrypted(name)
    assert pkg[MANIFEST:] != package(name)[MANIFEST:]  # the payload really travels encrypted
    assert install(device, pkg, chunk=333, wrap=wrap) == 0
    activate_selftest_confirm(device)
    st_ = state(device)
    assert st_.active is not None and st_.active.sequence == 6
    clear = (VECTORS / model).read_bytes()
    # Encryption at rest is not in scope: the installed slot holds the clear model (PROTOCOL 6.5).
    assert slot_bytes(device, st_.active_slot)[304 : 304 + len(clear)] == clear


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
