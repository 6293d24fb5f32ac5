"""examples/reference_device/device.py, a device written from docs/PROTOCOL.md alone, against the real
control plane and a private Mosquitto: provision, roll out v1 and v2, roll back; and, with the test
playing the server, a tampered package is refused."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.examples.protocol_env import EXAMPLES, SERVER_USER, ProtocolEnv, protocol_env
from tests.support.e2e_harness import require_tools, wait_for
from tests.support.reference_device import DEVICE, RunningDevice
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.signing.keys import generate_private_key, key_id
from tinyfleet.signing.package import build_package

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

V1 = (EXAMPLES / "vibration-1.0.0.tflite").read_bytes()
V2 = (EXAMPLES / "vibration-1.1.0.tflite").read_bytes()


def test_reference_device_imports_only_paho_cryptography_and_the_standard_library() -> None:
    import ast

    tree = ast.parse(DEVICE.read_text())
    roots = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if not (isinstance(node, ast.ImportFrom) and node.level)
    }
    assert "tinyfleet" not in roots
    assert roots - set(sys.stdlib_module_names) - {"__future__"} == {"paho", "cryptography"}


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ProtocolEnv]:
    with protocol_env(tmp_path) as e:
        yield e


def _rollout(env: ProtocolEnv, name: str, version_id: int, device_id: str) -> dict[str, Any]:
    rollout: dict[str, Any] = env.api.create_rollout(
        name=name, model_version_id=version_id, selector={"device_ids": [device_id]}, start=True
    )
    return rollout


def _wait_state(
    env: ProtocolEnv, rollout_id: int, states: tuple[str, ...], dev: RunningDevice
) -> dict[str, Any]:
    result: dict[str, Any] = {}

    def settled() -> bool:
        nonlocal result
        assert dev.process.poll() is None, f"the reference device exited:\n{dev.log()}"
        result = env.api.rollout(rollout_id)
        return result["state"] in states

    try:
        wait_for(settled, 90, f"rollout {rollout_id} to reach {states}")
    except AssertionError:
        raise AssertionError(f"{result.get('state')}: {result.get('state_reason')}\n{dev.log()}") from None
    return result


def test_reference_device_installs_v1_v2_and_rolls_back(env: ProtocolEnv) -> None:
    answer = env.provision("ref-0001", hardware_class=1)
    assert answer["device"]["hardware_class"] == 1
    dev = RunningDevice(answer, env.workdir, env.broker.host, env.broker.port)
    try:
        wait_for(lambda: env.api.device("ref-0001")["online"], 30, "the device to come online")
        wait_for(
            lambda: (env.api.device("ref-0001").get("capabilities") or {}).get("payload_decoder") is False,
            30,
            "its capabilities",
        )
        model = env.api.ensure_model("vibration")
        # Server-signed packages (min runtime 0.1.0 by default, PROTOCOL 4.6): the device reports 0.1.0.
        v1 = env.api.upload_tflite(model["id"], V1, version="1.0.0", hardware_class=1)
        v2 = env.api.upload_tflite(model["id"], V2, version="1.1.0", hardware_class=1)

        first = _rollout(env, "ref-v1", v1["id"], "ref-0001")
        done = _wait_state(env, first["id"], ("completed", "paused"), dev)
        assert done["state"] == "completed", done["state_reason"]
        assert env.api.device("ref-0001")["active_model_sha256"] == hashlib.sha256(V1).hexdigest()

        second = _rollout(env, "ref-v2", v2["id"], "ref-0001")
        done = _wait_state(env, second["id"], ("completed", "paused"), dev)
        assert done["state"] == "completed", done["state_reason"]
        assert env.api.device("ref-0001")["active_model_sha256"] == hashlib.sha256(V2).hexdigest()
        (action,) = env.api.rollout_actions(second["id"])
        assert action["state"] == "confirmed"
        # It said it has no payload decoder, so v2 came raw although a delta against v1 was possible.
        assert action["payload_encoding"] == 0
        assert action["bytes_received"] == action["raw_size"] == action["sent_size"]

        env.api.rollout_command(second["id"], "rollback")
        done = _wait_state(env, second["id"], ("rolled_back",), dev)
        assert done["rollback"]["by_state"] == {"confirmed": 1}
        wait_for(
            lambda: env.api.device("ref-0001")["active_model_sha256"] == hashlib.sha256(V1).hexdigest(),
            30,
            "the device back on v1",
        )
        # Telemetry in the documented format was accepted and stored.
        wait_for(
            lambda: env.api.telemetry_summary(device_id="ref-0001")["reports"] >= 1, 30, "a telemetry report"
        )
        stats = env.api.gateway_stats()
        assert not stats["malformed"], stats["malformed"]
        assert not stats["rejected"], stats["rejected"]
    finally:
        code = dev.stop()
    assert code == 0, dev.log()
    wait_for(lambda: not env.api.device("ref-0001")["online"], 30, "the server to see it offline")


# ----- tampered packages: the test plays the server ------------------------------------------------


def _serve(
    broker: DevBroker, password: str, device_id: str, package: bytes, model_sha: str
) -> list[dict[str, Any]]:
    """Publish an install of `package` to the device, answer its chunk requests, return its statuses
    until it finishes the action."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from tinyfleet.server.services.messages import encode_chunk

    statuses: list[dict[str, Any]] = []
    finished = threading.Event()
    action_id = f"act-{hashlib.sha256(package).hexdigest()[:12]}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fake-server", protocol=mqtt.MQTTv5)
    client.username_pw_set(SERVER_USER, password)

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        if msg.topic.endswith("/chunk/req"):
            offset, length = doc["offset"], min(doc["length"], 1024)
            data = package[offset : offset + length]
            c.publish(
                f"tf/{device_id}/chunk", encode_chunk(doc["package_id"], offset, len(package), data), qos=1
            )
        elif msg.topic.endswith("/status") and doc["action_id"] == action_id:
            statuses.append(doc)
            if doc["state"] in ("confirmed", "failed", "rolled_back"):
                finished.set()

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe([(f"tf/{device_id}/chunk/req", 1), (f"tf/{device_id}/status", 1)])
    client.loop_start()
    try:
        desired = {
            "action_id": action_id,
            "operation": "install",
            "package_id": f"pkg-{action_id}",
            "package_size": len(package),
            "model_sha256": model_sha,
            "chunk_size": 1024,
        }
        client.publish(f"tf/{device_id}/desired", json.dumps(desired), qos=1, retain=True).wait_for_publish(
            10
        )
        assert finished.wait(60), f"no final status; got {statuses}"
    finally:
        client.disconnect()
        client.loop_stop()
    return statuses


def test_reference_device_refuses_tampered_packages(tmp_path: Path) -> None:
    require_tools()
    key = generate_private_key()
    public = key.public_key().public_bytes_raw()
    good = build_package(
        V1,
        key,
        name="vibration",
        version="1.0.0",
        sequence=10,
        security_counter=0,
        hardware_class=1,
        min_runtime_version="0.1.0",
    )
    bad_signature = bytearray(good)
    bad_signature[100] ^= 0x01  # a signed field: the signature no longer holds
    bad_payload = bytearray(good)
    bad_payload[-1] ^= 0x01  # a model byte: the digest no longer holds
    other = build_package(
        V1,
        generate_private_key(),
        name="vibration",
        version="1.0.0",
        sequence=11,
        security_counter=0,
        hardware_class=1,
        min_runtime_version="0.1.0",
    )
    device_id, device_password, server_password = "ref-tamper", "device-secret-1", "server-secret-1"
    answer = {
        "device": {"id": device_id, "hardware_class": 1},
        "mqtt": {
            "host": "127.0.0.1",
            "port": None,
            "tls": False,
            "username": device_id,
            "password": device_password,
            "topic_prefix": f"tf/{device_id}/",
        },
        "trust_store": [{"key_id": key_id(public).hex(), "public_key": public.hex()}],
        "chunk_size": 1024,
    }
    sha = hashlib.sha256(V1).hexdigest()
    users = {SERVER_USER: server_password, device_id: device_password}
    with DevBroker(users=users, admin_users=[SERVER_USER]) as broker:
        dev = RunningDevice(answer, tmp_path, broker.host, broker.port)
        try:
            cases = [(bytes(bad_signature), 5), (bytes(bad_payload), 6), (other, 4)]  # BAD_SIGNATURE, ...
            for package, code in cases:
                statuses = _serve(broker, server_password, device_id, package, sha)
                assert statuses[-1]["state"] == "failed", (statuses, dev.log())
                assert statuses[-1]["error_code"] == code, (statuses, dev.log())
            # The untouched package installs and is confirmed: the refusals were about the tampering.
            statuses = _serve(broker, server_password, device_id, good, sha)
            assert [s["state"] for s in statuses][-2:] == ["trial", "confirmed"], dev.log()
        finally:
            dev.stop()
