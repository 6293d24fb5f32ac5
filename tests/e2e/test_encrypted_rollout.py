"""End to end, issue 18: an encrypted rollout (PROTOCOL 6) on a real Mosquitto and control plane reaches
simulated devices, each driving the real C runtime with the X25519 key it got at provisioning. The server
wraps the content key per device into the desired state; the agent hands the wrap to the runtime
(INSTALL_KEY), which decrypts the chunks while it streams them, keeps the model encrypted at rest under
the device's storage key (6.6) and confirms: a dump of each device's flash shows no window of the model
(tests/device/test_encrypted_install.py shows the same check finding a clearly installed model)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e_harness import E2E, e2e_env
from tests.support.flash_dump import shows
from tinyfleet.device.runtime import DeviceRuntime
from tinyfleet.signing.encryption import FLAG_ENCRYPTED
from tinyfleet.sim.cli import run_on_qemu
from tinyfleet.sim.fleet import LocalFleet
from tinyfleet.sim.profiles import get_profile
from tinyfleet.sim.qemu import build_firmware, missing_tools
from tinyfleet.sim.qemu_transport import QemuTransport
from tinyfleet.sim.runtime_driver import HostTransport

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FLAGS_OFFSET = 65  # manifest `flags` (PROTOCOL 1.1)
MANIFEST_MAGIC = b"TFMF"  # manifest bytes 0..3 (PROTOCOL 1.1)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[E2E]:
    with e2e_env(tmp_path) as e:
        yield e


def _runtime(fleet: LocalFleet, device_id: str) -> DeviceRuntime:
    transport = fleet.agents[device_id].driver.transport
    assert isinstance(transport, HostTransport)
    return transport.runtime


def test_encrypted_rollout_reaches_simulated_devices_and_they_confirm(env: E2E) -> None:
    specs, provisioned = env.provision(3, "encr")
    assert all(s.encryption_key for s in specs), "provisioning hands every device its X25519 key"
    fleet = env.fleet(specs, provisioned[0].trusted_keys)  # devices trust the server's signing key
    assert isinstance(fleet, LocalFleet)
    model = env.releases[0].model
    model_id = int(env.api.ensure_model("encrypted-vibration")["id"])
    profile = get_profile("lan")
    version = env.api.upload_tflite(model_id, model, version="1.0.0", hardware_class=profile.hardware_class)
    rollout = env.api.create_rollout(
        name="encrypted-1.0.0",
        model_version_id=version["id"],
        selector={"group": "encr"},
        waves=[{"percent": 100}],
        start=True,
        encrypted=True,
    )
    assert rollout["encrypted"] is True
    done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=180)
    assert done["state"] == "completed", (done["state_reason"], env.api.rollout_actions(rollout["id"]))
    assert done["deploy"]["by_state"] == {"confirmed": 3}
    sha = hashlib.sha256(model).hexdigest()
    assert set(env.active_models(specs).values()) == {sha}
    for spec in specs:
        runtime = _runtime(fleet, spec.device_id)
        flash: bytes = fleet.call(runtime.read_flash)  # agents and their devices belong to the fleet's loop
        slot_size, sector = profile.slot_size, profile.sector_size
        slots = [flash[2 * sector + i * slot_size : 2 * sector + (i + 1) * slot_size] for i in range(2)]
        (slot,) = [s for s in slots if s[:4] == MANIFEST_MAGIC]  # fresh devices: one installed slot
        # The installed package was the encrypted one (its signed manifest says so), and neither the
        # slot nor any other flash byte holds the clear model (PROTOCOL 6.6).
        assert slot[FLAGS_OFFSET] & FLAG_ENCRYPTED
        assert not shows(flash, model)
    snap = fleet.snapshot()
    assert snap.totals["installs_confirmed"] == 3 and snap.totals["installs_failed"] == 0


@pytest.mark.qemu
@pytest.mark.skipif(missing_tools() is not None, reason=f"QEMU port: {missing_tools()}")
def test_encrypted_rollout_reaches_a_qemu_device_whose_flash_shows_no_model(env: E2E) -> None:
    """One of the devices is the Cortex-M4 firmware built with decryption (ENCRYPTION=1) under QEMU, its
    X25519 key in its provisioning record: it announces the capability, gets its own wrap, decrypts on
    the M4 and keeps the model encrypted in its flash."""
    for target in ("all", "engine"):  # the board runs the engine build when there is one (default_firmware)
        build_firmware(target, encryption=True)
    specs, provisioned = env.provision(2, "encq")
    specs = run_on_qemu(specs, 1)
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet)
    board = fleet.agents[specs[0].device_id].driver
    assert isinstance(board.transport, QemuTransport) and board.can_decrypt
    model = env.releases[0].model
    model_id = int(env.api.ensure_model("encrypted-qemu")["id"])
    hardware_class = get_profile("lan").hardware_class
    version = env.api.upload_tflite(model_id, model, version="1.0.0", hardware_class=hardware_class)
    rollout = env.api.create_rollout(
        name="encrypted-qemu-1.0.0",
        model_version_id=version["id"],
        selector={"group": "encq"},
        waves=[{"percent": 100}],
        start=True,
        encrypted=True,
    )
    done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=180)
    assert done["state"] == "completed", (done["state_reason"], env.api.rollout_actions(rollout["id"]))
    assert done["deploy"]["by_state"] == {"confirmed": 2}
    assert set(env.active_models(specs).values()) == {hashlib.sha256(model).hexdigest()}
    device = board.transport.device

    def dump() -> bytes:
        device.power_cycle()  # flash.bin saved at power-off; the board boots again from it
        return device.read_flash()

    image: bytes = fleet.call(dump, timeout=60)
    assert not shows(image, model)
    host_image: bytes = fleet.call(_runtime(fleet, specs[1].device_id).read_flash)
    assert not shows(host_image, model)
