"""The MQTT gateway against a real Mosquitto, with scripted paho clients playing devices."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway_setup import setup_hello, wait_for
from tests.support.server_scripted import MqttLink, ScriptedDevice
from tinyfleet.server.services.messages import decode_chunk, decode_chunk_error
from tinyfleet.server.stack import Stack, run_stack
from tinyfleet.signing.keys import TrustStore


@pytest.fixture
def stack(mosquitto, tmp_path) -> Iterator[Stack]:
    with run_stack(mosquitto.url, data_dir=tmp_path / "server", tick_seconds=0.1) as st:
        wait_for(lambda: st.ctx.gateway.connected.is_set(), what="gateway connection")
        yield st


@pytest.fixture
def models(shared_models: Path) -> Path:
    return shared_models


def test_chunks_served_bounded_and_resumable(stack, mosquitto, models):
    v1, _v2, _devices = setup_hello(stack, models, 1)
    pkg = v1["packages"][0]
    with stack.client() as c:
        c.put("/api/hardware-classes/1", json={"name": "m4", "chunk_size": 256}).raise_for_status()
        expected = c.get(f"/api/packages/{pkg['id']}/download").content
    link = MqttLink(mosquitto.host, mosquitto.port, "dev-0")
    try:
        assert link.connected.wait(5)
        ask = lambda offset, length, pid=pkg["id"]: decode_chunk(  # noqa: E731
            link.send(
                "tf/dev-0/chunk/req",
                json.dumps({"package_id": pid, "offset": offset, "length": length}).encode(),
            )[0].payload
        )
        pid, offset, size, data = ask(0, 4096)
        assert (pid, offset, size) == (pkg["id"], 0, len(expected)) and data == expected[:256]
        # resume anywhere: the server answers the offset asked for
        _, offset, _, data = ask(1000, 100)
        assert offset == 1000 and data == expected[1000:1100]
        got = bytearray()
        while len(got) < size:
            got += ask(len(got), 10_000)[3]
        assert bytes(got) == expected
        # beyond the end, or an unknown package: an empty chunk, never silence
        assert ask(size, 10)[2:] == (size, b"")
        assert ask(0, 10, "pkg-unknown")[2:] == (0, b"")
        with stack.client() as c:
            stats = c.get("/api/gateway/stats").json()
        assert stats["events"]["chunk_refused"] == 2 and stats["connected"] is True
    finally:
        link.close()


def test_malformed_payloads_are_counted_not_fatal(stack, mosquitto, models):
    v1, _v2, _ = setup_hello(stack, models, 1)
    link = MqttLink(mosquitto.host, mosquitto.port, "dev-0")
    try:
        assert link.connected.wait(5)
        bad = [
            ("status", b"\xff\xfe not utf8"),
            ("status", b'{"action_id": "act-nope", "state": "confirmed"}'),
            ("status", b'{"action_id": 1, "state": "exploded"}'),
            ("reported", b"[1, 2, 3]"),
            ("reported", b'{"runtime_version": -1}'),
            ("presence", b'{"online": "yes"}'),
            ("telemetry", b'{"reports": [{"ts": "now"}]}'),
            ("chunk/req", b'{"package_id": "x", "offset": -5, "length": 10}'),
        ]
        for kind, payload in bad:
            link.client.publish(f"tf/dev-0/{kind}", payload, qos=1).wait_for_publish(5)
        link.client.publish("tf/ghost/presence", b'{"online": true}', qos=1).wait_for_publish(5)
        with stack.client() as c:
            wait_for(
                lambda: sum(c.get("/api/gateway/stats").json()["malformed"].values()) >= len(bad),
                what="malformed counters",
            )
            stats = c.get("/api/gateway/stats").json()
            assert stats["malformed"] == {
                "status": 3,
                "reported": 2,
                "presence": 1,
                "telemetry": 1,
                "chunk/req": 1,
            }
            wait_for(
                lambda: c.get("/api/gateway/stats").json()["events"].get("unknown_device") == 1,
                what="unknown device counter",
            )
        # the malformed chunk request was answered with a chunk error (PROTOCOL 4.3), not dropped
        code, reason = decode_chunk_error(link.chunks.get(timeout=10))
        assert code == 40 and "offset" in reason
        # the gateway still serves chunks
        reply = link.send(
            "tf/dev-0/chunk/req",
            json.dumps({"package_id": v1["packages"][0]["id"], "offset": 0, "length": 64}).encode(),
        )
        assert len(decode_chunk(reply[0].payload)[3]) == 64
    finally:
        link.close()


def test_presence_last_will_and_reported_state(stack, mosquitto, models):
    setup_hello(stack, models, 1)
    link = MqttLink(mosquitto.host, mosquitto.port, "dev-0")
    try:
        assert link.connected.wait(5)
        dev = ScriptedDevice("dev-0", 1, link.send, TrustStore(), slots=["ab" * 32, None], active=0)
        dev.come_online()
        with stack.client() as c:
            wait_for(lambda: c.get("/api/devices/dev-0").json()["online"], what="online")
            wait_for(
                lambda: c.get("/api/devices/dev-0").json()["active_model_sha256"] == "ab" * 32,
                what="reported state",
            )
            link.drop_with_will()
            wait_for(lambda: not c.get("/api/devices/dev-0").json()["online"], what="offline from the will")
    finally:
        link.client.loop_stop()


def test_rollout_end_to_end_over_mqtt_with_retained_desired_state(stack, mosquitto, models):
    v1, v2, devices = setup_hello(stack, models, 4)
    with stack.client() as c:
        store = TrustStore(bytes.fromhex(k["public_key"]) for k in c.get("/api/trust-store").json())
    links = [MqttLink(mosquitto.host, mosquitto.port, d["device"]["id"]) for d in devices]
    try:
        scripted = []
        for link in links:
            assert link.connected.wait(5)
            dev = ScriptedDevice(
                link.device_id, 1, link.send, store, slots=[v1["packages"][0]["model_sha256"], None], active=0
            )
            dev.come_online()
            scripted.append(dev)
        with stack.client() as c:
            wait_for(lambda: len(c.get("/api/devices", params={"online": True}).json()) == 4, what="online")
            r = c.post(
                "/api/rollouts",
                json={
                    "name": "mqtt",
                    "model_version_id": v2["id"],
                    "start": True,
                    "waves": [{"count": 1}, {"percent": 100}],
                    "max_concurrent": 2,
                },
            ).json()
            assert r["state"] == "running", r

            def progress() -> bool:
                for dev, link in zip(scripted, links, strict=True):
                    dev.follow(link.desired)
                return c.get(f"/api/rollouts/{r['id']}").json()["state"] == "completed"

            wait_for(progress, timeout=30, what="rollout completion")
            assert all(d.active_sha() == v2["packages"][0]["model_sha256"] for d in scripted)
        # desired state is retained: a fresh subscriber gets it without any new publish
        late = MqttLink(mosquitto.host, mosquitto.port, "dev-0-observer")
        late.client.subscribe("tf/dev-0/desired", qos=1)
        wait_for(lambda: late.desired is not None, what="retained desired")
        assert (
            late.desired["operation"] == "install"
            and late.desired["model_sha256"] == v2["packages"][0]["model_sha256"]
        )  # package_id names the package or the smaller variant (delta/compressed) this device was sent
        late.close()
    finally:
        for link in links:
            link.close()


def test_gateway_reconnects_and_republishes_after_broker_restart(tmp_path, mosquitto, models):
    broker = mosquitto  # killed and restarted on the same port below
    with run_stack(broker.url, data_dir=tmp_path / "server", tick_seconds=0.1) as st:
        wait_for(lambda: st.ctx.gateway.connected.is_set(), what="connection")
        setup_hello(st, models, 1)
        with st.ctx.session() as s:
            from tinyfleet.server.models import Device

            s.get(Device, "dev-0").desired = {
                "action_id": None,
                "operation": "none",
                "package_id": None,
                "package_size": 0,
                "model_sha256": None,
                "chunk_size": 0,
            }
        port = broker.port
        broker.kill()
        wait_for(lambda: not st.ctx.gateway.connected.is_set(), what="disconnect")
        broker.restart()
        assert broker.port == port
        wait_for(lambda: st.ctx.gateway.connected.is_set(), timeout=40, what="reconnection")
        link = MqttLink(broker.host, broker.port, "dev-0")
        wait_for(lambda: link.desired is not None, what="republished desired state")
        assert link.desired["operation"] == "none"
        link.close()


@pytest.mark.slow
def test_oversized_telemetry_is_stopped_by_the_broker_and_by_the_server(dev_broker, tmp_path, models):
    # The line every broker config carries (deploy/mosquitto.conf): packets above 260 KiB are refused.
    broker = dev_broker(extra_config=["max_packet_size 266240"])
    with run_stack(broker.url, data_dir=tmp_path / "server", tick_seconds=0.1) as st:
        wait_for(lambda: st.ctx.gateway.connected.is_set(), what="gateway connection")
        setup_hello(st, models, 1)
        big = MqttLink(broker.host, broker.port, "dev-0")
        assert big.connected.wait(5)
        big.client.publish("tf/dev-0/telemetry", b"x" * 300 * 1024, qos=1)
        wait_for(lambda: not big.client.is_connected(), what="the broker dropping the oversized sender")
        big.client.loop_stop()
        # Below the broker's limit but above the server's 256 KiB for telemetry: counted as malformed.
        link = MqttLink(broker.host, broker.port, "dev-0")
        assert link.connected.wait(5)
        link.send("tf/dev-0/telemetry", b"{" + b" " * (256 * 1024) + b"}")
        wait_for(lambda: st.ctx.stats.malformed["telemetry"] == 1, what="server-side size check")
        assert st.ctx.stats.received["telemetry"] == 1  # the 300 KiB message never reached the server
        link.close()
