"""Issue 16: MQTT 3.1.1 and 5 side by side on a real Mosquitto. Devices speak 3.1.1 by default (the other
e2e tests) and 5 on request; the gateway speaks 5 by default and 3.1.1 with TINYFLEET_MQTT_PROTOCOL. Here
the gateway is on 3.1.1 with a mixed fleet: a rollout completes on both kinds, and a 3.1.1 device that
goes offline cleanly is seen offline (its last will, PROTOCOL.md 4.6)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from tests.support.e2e_harness import SERVER_USER, _upload_releases, demo_releases, require_tools, wait_for
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.server.stack import run_stack
from tinyfleet.signing.keys import save_keypair
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import FleetConfig, LocalFleet
from tinyfleet.sim.profiles import FleetMix, get_profile
from tinyfleet.sim.server_api import ServerApi

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_gateway_on_311_with_devices_on_311_and_5(tmp_path: Path) -> None:
    require_tools()
    key, releases = demo_releases()
    save_keypair(tmp_path / "release", key)
    password = secrets.token_urlsafe(12)
    pwfile = tmp_path / "mosquitto.passwd"
    write_password_file(pwfile, [(SERVER_USER, hash_password(password))])
    with DevBroker(password_file=pwfile, admin_users=[SERVER_USER]) as broker:
        url = f"mqtt://{SERVER_USER}:{password}@{broker.host}:{broker.port}"
        with (
            run_stack(
                url,
                data_dir=tmp_path / "server",
                mqtt_password_file=pwfile,
                trusted_key_paths=(tmp_path / "release.pub",),
                tick_seconds=0.2,
                mqtt_protocol="3.1.1",
            ) as stack,
            ServerApi(stack.url, stack.token) as api,
        ):
            assert stack.ctx.gateway is not None
            wait_for(stack.ctx.gateway.connected.is_set, 30, "the 3.1.1 gateway to connect")
            version_ids = _upload_releases(api, releases)
            mix = FleetMix.single(get_profile("lan"))
            fleets = []
            for protocol, prefix in (("3.1.1", "old"), ("5", "new")):
                specs, provisioned = provision_fleet(api, 3, mix, prefix, "mixed", seed=len(prefix))
                broker.reload()
                config = FleetConfig(
                    broker.host,
                    broker.port,
                    provisioned[0].trusted_keys,
                    tuple(specs),
                    mqtt_protocol=protocol,
                )
                fleets.append(LocalFleet(config).start())
            try:
                for fleet in fleets:
                    assert fleet.wait_online(timeout=60)
                    assert {a.client._protocol for a in fleet.agents.values()} == {
                        4 if fleet.config.mqtt_protocol == "3.1.1" else 5
                    }
                wait_for(
                    lambda: sum(d["online"] for d in api.devices(group="mixed")) == 6, 60, "6 devices online"
                )
                rollout = api.create_rollout(
                    name="mixed",
                    model_version_id=version_ids[0],
                    selector={"group": "mixed"},
                    start=True,
                    waves=[{"percent": 100}],
                )
                wait_for(lambda: api.rollout(rollout["id"])["state"] == "completed", 300, "the rollout")
                assert api.rollout(rollout["id"])["deploy"]["by_state"] == {"confirmed": 6}
                # A clean stop under 3.1.1 closes without DISCONNECT: the broker publishes the last will.
                fleets[0].set_offline(["old-00000"])
                wait_for(lambda: not api.device("old-00000")["online"], 30, "the 3.1.1 device to go offline")
                fleets[1].set_offline(["new-00000"])
                wait_for(lambda: not api.device("new-00000")["online"], 30, "the v5 device to go offline")
                assert sum(d["online"] for d in api.devices(group="mixed")) == 4
            finally:
                for fleet in fleets:
                    fleet.stop()
