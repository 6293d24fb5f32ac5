"""End to end: an ONNX model built here goes through `tinyfleet models upload --onnx` (converted to int8 on
the client, checked and signed by the real server like any upload) and rolls out to simulated devices
that each run it on the real C runtime, and to a QEMU board running the firmware."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tensorflow")

from tests.support import onnx_models
from tests.support.e2e_harness import E2E, e2e_env
from tests.support.paths import REPO
from tinyfleet.sim.cli import run_on_qemu
from tinyfleet.sim.fleet import LocalFleet
from tinyfleet.sim.profiles import get_profile
from tinyfleet.sim.qemu_transport import QemuTransport, qemu_unavailable
from tinyfleet.sim.runtime_driver import RuntimeState

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[E2E]:
    with e2e_env(tmp_path) as e:
        yield e


def _upload_with_cli(env: E2E, tmp_path: Path, name: str) -> dict[str, Any]:
    """`tinyfleet models upload NAME --onnx ... --data ...` against the running server; its JSON answer."""
    model, x, y = onnx_models.conv_net()
    onnx_path, data_path = onnx_models.save(model, x, y, tmp_path, "digits")
    env.api.ensure_model(name)
    token = str(env.api._client.headers["Authorization"]).split(" ", 1)[1]
    child_env = dict(os.environ, TINYFLEET_API_URL=env.api.base_url, TINYFLEET_API_TOKEN=token)
    hw = str(get_profile("lan").hardware_class)
    command = [sys.executable, "-m", "tinyfleet.cli", "models", "upload", name, "--onnx", str(onnx_path),
               "--data", str(data_path), "--version", "1.0.0", "--hardware-class", hw, "--json"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=child_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    version: dict[str, Any] = json.loads(done.stdout)
    assert version["model_name"] == name and version["packages"][0]["size"] > 0
    return version


def _roll_out(env: E2E, version: dict[str, Any], group: str, devices: int) -> None:
    rollout = env.api.create_rollout(
        name=f"{group}-1.0.0",
        model_version_id=version["id"],
        selector={"group": group},
        waves=[{"percent": 100}],
        start=True,
    )
    done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=240)
    assert done["state"] == "completed", (done["state_reason"], env.api.rollout_actions(rollout["id"]))
    assert done["deploy"]["by_state"] == {"confirmed": devices}


def test_onnx_born_model_rolls_out_to_simulated_devices(env: E2E, tmp_path: Path) -> None:
    specs, provisioned = env.provision(4, "onnx")
    env.fleet(specs, provisioned[0].trusted_keys)  # devices trust the server's signing key
    version = _upload_with_cli(env, tmp_path, "onnx-digits")
    _roll_out(env, version, "onnx", 4)
    assert set(env.active_models(specs).values()) == {version["packages"][0]["model_sha256"]}


@pytest.mark.qemu
def test_onnx_born_model_rolls_out_to_a_qemu_device(env: E2E, tmp_path: Path) -> None:
    reason = qemu_unavailable()
    if reason is not None:
        pytest.skip(reason)
    specs, provisioned = env.provision(2, "onnxq")
    specs = run_on_qemu(specs, 1)  # the first device is the mps2-an386 firmware under QEMU
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet) and specs[0].qemu
    version = _upload_with_cli(env, tmp_path, "onnx-digits-q")
    _roll_out(env, version, "onnxq", 2)
    target = version["packages"][0]["model_sha256"]
    assert set(env.active_models(specs).values()) == {target}
    driver = fleet.agents[specs[0].device_id].driver
    assert isinstance(driver.transport, QemuTransport)

    def after_power_cycle() -> RuntimeState:  # the board's own answer, from its persisted flash
        driver.transport.device.power_cycle()
        state: RuntimeState = driver.state()
        return state

    state: RuntimeState = fleet.call(after_power_cycle, timeout=60)
    assert state.active_model_sha256() == target
