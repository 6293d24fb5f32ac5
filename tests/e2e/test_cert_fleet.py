"""End to end with certificate identity: `tinyfleet server run --broker` in cert mode (a TLS-only Mosquitto
trusting the fleet CA), a simulated fleet provisioned in bulk, each device logging in with its own
certificate, and a rollout to all of them. TINYFLEET_CERT_FLEET_DEVICES sets the fleet's size (2,000)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e_harness import E2E, server_run_env

COUNT = int(os.environ.get("TINYFLEET_CERT_FLEET_DEVICES", "2000"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[E2E]:
    monkeypatch.setenv("TINYFLEET_DEVICE_AUTH", "cert")  # the child server inherits it
    with server_run_env(tmp_path) as e:
        yield e


def test_rollout_to_a_certificate_fleet_completes(env: E2E) -> None:
    specs, provisioned = env.provision(COUNT, "cert")
    assert all(p.password is None and p.cert_pem and p.key_pem for p in provisioned)
    assert provisioned[0].mqtt_tls
    # The broker never heard of these devices: no password file, no reload; they log in by certificate.
    assert not (env.workdir / "server" / "mosquitto.passwd").exists()
    fleet = env.fleet(specs, provisioned[0].trusted_keys, processes=2)
    rollout = env.rollout("cert-v1", 0, "cert", max_concurrent=500)
    done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=900)
    assert done["state"] == "completed", done["state_reason"]
    assert done["deploy"]["by_state"] == {"confirmed": COUNT}
    assert set(env.active_models(specs).values()) == {env.releases[0].model_sha256}
    assert fleet.snapshot().totals["installs_confirmed"] == COUNT
