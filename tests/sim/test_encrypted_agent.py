"""The simulated agent's side of encrypted installs (PROTOCOL 4.1 "content_key", 3.2 INSTALL_KEY): the
desired state's wrap is parsed and handed to the real C runtime after every begin, resumes included."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.support.device_frames import MANIFEST, package
from tests.support.device_frames import trusted_keys as vector_keys
from tinyfleet.signing import encryption as enc
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.keys import private_key_from_seed
from tinyfleet.sim.agent import parse_desired
from tinyfleet.sim.profiles import DeviceProfile
from tinyfleet.sim.runtime_driver import RuntimeDriver, RuntimeFailure, TrustedKey

SIGNER = private_key_from_seed(hashlib.sha256(b"tinyfleet test vector key: trusted").digest())
DESIRED = {"operation": "install", "action_id": "a1", "package_id": "p1", "package_size": 1000,
           "model_sha256": "ab" * 32, "chunk_size": 1024}  # fmt: skip


def test_desired_content_key_is_parsed_and_checked() -> None:
    wrap = bytes(range(80))
    action = parse_desired(json.dumps({**DESIRED, "content_key": base64.b64encode(wrap).decode()}).encode())
    assert action.content_key == wrap
    assert parse_desired(json.dumps(DESIRED).encode()).content_key is None
    for bad in ("!!", base64.b64encode(wrap[:79]).decode(), 5):
        with pytest.raises(ValueError, match="content_key"):
            parse_desired(json.dumps({**DESIRED, "content_key": bad}).encode())


def _driver(key: bytes | None) -> RuntimeDriver:
    profile = DeviceProfile(
        name="vectors", hardware_class=7, ram_budget=16384, slot_size=16384, sector_size=4096
    )
    keys = [TrustedKey(kid, pub) for kid, pub in vector_keys()]
    return RuntimeDriver(profile, keys, encryption_key=key)


def test_driver_installs_an_encrypted_package_and_resumes_after_a_power_cut() -> None:
    private, public = enc.generate_device_keypair()
    content_key = enc.new_content_key()
    pkg = enc.encrypt_package(package("good_active.tfpkg"), content_key, SIGNER)
    wrap = enc.wrap_content_key(content_key, public, pkg[:MANIFEST])
    driver = _driver(private)
    assert driver.can_decrypt
    try:
        assert driver.install_begin(pkg[:MANIFEST], wrap) == 0
        assert driver.install_chunk(0, pkg[MANIFEST : MANIFEST + 1200]) == 1200
        driver.transport.arm_power_cut(1, seed=3)
        with pytest.raises(RuntimeFailure):
            driver.install_chunk(1200, pkg[MANIFEST + 1200 : MANIFEST + 2000])
        driver.power_on_and_boot()
        resume = driver.install_begin(pkg[:MANIFEST], wrap)  # the key again, then the resume offset
        assert resume == 1200
        driver.install_chunk(resume, pkg[MANIFEST + resume :])
        driver.install_end()
        driver.activate()
        driver.selftest()
        driver.confirm()
        assert driver.state().active_model_sha256() == pkg[108:140].hex()
    finally:
        driver.close()


def test_driver_without_the_wrap_gets_the_runtime_refusal() -> None:
    private, _ = enc.generate_device_keypair()
    content_key = enc.new_content_key()
    pkg = enc.encrypt_package(package("good_active.tfpkg"), content_key, SIGNER)
    driver = _driver(private)
    try:
        assert driver.install_begin(pkg[:MANIFEST]) == 0
        with pytest.raises(RuntimeFailure) as err:
            driver.install_chunk(0, pkg[MANIFEST : MANIFEST + 100])
        assert err.value.code == ErrorCode.BAD_STATE
    finally:
        driver.close()
