"""QEMU boards with certificate identities (issue 12): `tinyfleet server run --broker` in cert mode (a
TLS-only Mosquitto with require_certificate and use_identity_as_username, no password file), and two
mps2-an386 firmware devices under QEMU that log in with the certificates provisioning gave them: one in a
simulated fleet, one as the conformance kit's device process (`python -m tinyfleet.sim.one_device --qemu`,
from the raw provisioning answer). A rollout confirms on both, and each board holds the new model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.e2e_harness import E2E, server_run_env, wait_for
from tests.support.paths import REPO
from tinyfleet.sim.cli import run_on_qemu
from tinyfleet.sim.profiles import get_profile
from tinyfleet.sim.qemu_transport import QemuTransport, qemu_unavailable

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[E2E]:
    reason = qemu_unavailable()
    if reason is not None:
        pytest.skip(reason)
    monkeypatch.setenv("TINYFLEET_DEVICE_AUTH", "cert")  # the child server inherits it
    with server_run_env(tmp_path) as e:
        yield e


def _provisioning_answer(env: E2E, device_id: str, group: str) -> dict[str, object]:
    """The raw answer of POST /api/devices, as the conformance kit hands it to its device process."""
    assert env.child is not None
    headers = {"Authorization": f"Bearer {env.child.token}"}
    body = {"id": device_id, "hardware_class": get_profile("lan").hardware_class, "group": group}
    response = httpx.post(f"{env.child.url}/api/devices", json=body, headers=headers, timeout=30)
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


def test_qemu_boards_log_in_with_certificates_and_take_a_rollout(env: E2E, tmp_path: Path) -> None:
    specs, provisioned = env.provision(1, "qc")
    assert provisioned[0].password is None and provisioned[0].cert_pem and provisioned[0].mqtt_tls
    assert not (env.workdir / "server" / "mosquitto.passwd").exists()  # the broker knows no device
    specs = run_on_qemu(specs, 1)
    assert specs[0].qemu and specs[0].cert_pem is not None
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    board = fleet.agents[specs[0].device_id]  # type: ignore[union-attr]
    assert isinstance(board.driver.transport, QemuTransport)
    assert board._tls is not None  # it connected over TLS with its certificate

    answer = _provisioning_answer(env, "qc-kit", "qc")
    mqtt_info, certificate = answer["mqtt"], answer["certificate"]
    assert isinstance(mqtt_info, dict) and mqtt_info.get("password") is None and mqtt_info["tls"]
    assert isinstance(certificate, dict) and certificate["certificate_pem"]
    answer_file = tmp_path / "answer.json"
    answer_file.write_text(json.dumps(answer))
    cmd = [sys.executable, "-m", "tinyfleet.sim.one_device", "--provisioning", str(answer_file)]
    cmd += ["--state-dir", str(tmp_path / "kit-state"), "--qemu"]
    with open(tmp_path / "one_device.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: env.api.device("qc-kit")["online"], 90, "the QEMU device process online")
        rollout = env.rollout("qc-v1", 0, "qc")
        done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=180)
        assert done["state"] == "completed", done["state_reason"]
        assert done["deploy"]["by_state"] == {"confirmed": 2}
        v1 = env.releases[0].model_sha256
        for device_id in (specs[0].device_id, "qc-kit"):
            assert env.api.device(device_id)["active_model_sha256"] == v1
        state = fleet.call(board.driver.state, timeout=60)  # type: ignore[union-attr]
        assert (state.phase, state.active_model_sha256()) == ("idle", v1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, (tmp_path / "one_device.log").read_text()[-2000:]
