"""End to end over a real Mosquitto with simulated devices that drive the real C runtime: the server
packages uploaded .tflite files (engine-checked, with self-test), sends devices on v1 the v2 update as a
signed delta, a device without a model a whole-model payload, and the bytes it reports are the bytes it
served."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import pytest

from tests.support.model_edits import LSTM, with_operator
from tests.support.paths import SHARED_MODELS
from tests.support.server_scripted import MqttLink, ScriptedDevice
from tinyfleet.signing.keys import TrustStore

MODELS = SHARED_MODELS
PAIRS = MODELS / "pairs"


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow  # measured > 3 s
def test_v1_devices_get_v2_as_a_delta_over_mqtt(mosquitto, db_url, tmp_path, shared_models):
    from tinyfleet.server.stack import run_stack
    from tinyfleet.sim.cli import provision_fleet
    from tinyfleet.sim.fleet import FleetConfig, LocalFleet
    from tinyfleet.sim.profiles import FleetMix, get_profile
    from tinyfleet.sim.server_api import ServerApi

    v1_bytes = (PAIRS / "micro_speech.0.tflite").read_bytes()
    v2_bytes = (PAIRS / "micro_speech.2.tflite").read_bytes()
    with run_stack(
        mosquitto.url, database_url=db_url, data_dir=tmp_path / "server", tick_seconds=0.2
    ) as stack:
        with stack.client() as c:
            model = c.post("/api/models", json={"name": "speech"}).json()
            versions = []
            for version, data in (("1.0.0", v1_bytes), ("2.0.0", v2_bytes)):
                resp = c.post(
                    f"/api/models/{model['id']}/versions",
                    params={"version": version, "hardware_class": 1},
                    content=data,
                )
                assert resp.status_code == 201, resp.text
                versions.append(resp.json())
            svdf = MODELS / "keyword_scrambled_8bit.tflite"
            if svdf.exists():  # refused at upload by the real engine, naming the op (QUANTIZE made an LSTM)
                resp = c.post(
                    f"/api/models/{model['id']}/versions",
                    params={"version": "3.0.0", "hardware_class": 1},
                    content=with_operator(svdf.read_bytes(), 13, LSTM),
                )
                detail = resp.json()["detail"]
                assert resp.status_code == 422 and "UNSUPPORTED_OP: UNIDIRECTIONAL_SEQUENCE_LSTM" in detail
            trust = TrustStore(bytes.fromhex(k["public_key"]) for k in c.get("/api/trust-store").json())
            assert c.post("/api/devices", json={"id": "odd-0", "hardware_class": 1}).status_code == 201
        v1, v2 = versions
        api = ServerApi(stack.url, stack.token)
        fleet = None
        link = MqttLink(mosquitto.host, mosquitto.port, "odd-0")
        try:
            # A device whose active model is one the server never registered: no delta is possible.
            unknown = hashlib.sha256(b"a model built elsewhere").hexdigest()
            odd = ScriptedDevice("odd-0", 1, link.send, trust, slots=[unknown, None], active=0)
            assert link.connected.wait(5)
            odd.come_online()
            specs, provisioned = provision_fleet(
                api, 4, FleetMix.single(get_profile("lan")), "dlt", "delta", seed=1
            )
            config = FleetConfig(mosquitto.host, mosquitto.port, provisioned[0].trusted_keys, tuple(specs))
            fleet = LocalFleet(config).start()
            assert fleet.wait_online(timeout=60)
            ids = [s.device_id for s in specs]

            def rollout(version: dict, devices: list[str]) -> dict:
                r = api.create_rollout(
                    name=f"to {version['version']}",
                    model_version_id=version["id"],
                    selector={"device_ids": devices},
                    start=True,
                    waves=[{"percent": 100}],
                )

                def settled() -> bool:
                    odd.follow(link.desired)
                    return api.rollout(r["id"])["state"] in ("completed", "paused", "rolled_back")

                wait_for(settled, 120, f"rollout to {version['version']}")
                done = api.rollout(r["id"])
                assert done["state"] == "completed", done
                return done

            wait_for(lambda: sum(d["online"] for d in api.devices()) == 5, 30, "devices online")
            first = rollout(v1, ids[:3])  # devices without a model: no base, a whole-model payload
            assert "delta" not in first["transfer"]["encodings"]
            second = rollout(v2, [*ids, "odd-0"])  # three on v1, one still empty, one on an unknown model
            actions = {a["device_id"]: a for a in api.rollout_actions(second["id"])}
            raw_size = v2["packages"][0]["size"]
            v2_sha = v2["packages"][0]["model_sha256"]
            for device_id in ids[:3]:
                a = actions[device_id]
                assert a["payload_encoding"] == 2 and a["state"] == "confirmed", a
                assert 0 < a["bytes_sent"] < raw_size // 10
            fresh = actions[ids[3]]
            assert fresh["payload_encoding"] in (0, 1) and fresh["state"] == "confirmed"
            assert fresh["bytes_sent"] >= fresh["sent_size"] > raw_size // 2
            delta_bytes = sum(actions[d]["bytes_sent"] for d in ids[:3])
            assert delta_bytes < 3 * raw_size // 10
            stranger = actions["odd-0"]
            assert stranger["payload_encoding"] in (0, 1) and stranger["state"] == "confirmed"
            assert odd.encodings == [stranger["payload_encoding"]] and odd.active_sha() == v2_sha
            total = delta_bytes + fresh["bytes_sent"] + stranger["bytes_sent"]
            assert second["transfer"]["bytes_sent"] == total
            assert second["transfer"]["raw_bytes"] == 5 * raw_size
            wait_for(
                lambda: all(d["active_model_sha256"] == v2_sha for d in api.devices()), 30, "devices on v2"
            )
        finally:
            link.close()
            if fleet is not None:
                fleet.stop()
            api.close()
