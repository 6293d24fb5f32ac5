"""Issue 16: a 3-node RabbitMQ cluster on one box (deploy/cluster/rabbitcluster.py) with the real control
plane and simulated devices (real C runtime) speaking MQTT 3.1.1 with X.509 certificates, spread round
robin over the nodes. The server publishes through one node and consumes device traffic over AMQP from a
quorum queue; a node killed mid-rollout sends its devices to another node and the rollout completes,
with every telemetry report stored exactly once. The node killed is the one the server uses: its gateway
and its AMQP consumer move to the other nodes as well."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.e2e_harness import freeze_telemetry, require_tools, stored_reports, wait_for
from tests.support.rabbit_cluster import ClusterEnv, cluster_env, launcher
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.sim.device_tls import device_tls_context
from tinyfleet.sim.profiles import get_profile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DEVICES = 30


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ClusterEnv]:
    with cluster_env(tmp_path) as e:
        yield e


def _broker_counts(fleet: object) -> Counter[int]:
    return Counter(agent.broker[1] for agent in fleet.agents.values())  # type: ignore[attr-defined]


def test_rollout_survives_a_broker_node_kill(env: ClusterEnv) -> None:
    assert len(env.running_nodes()) == 3
    profile = dataclasses.replace(get_profile("lan"), telemetry_period_s=2.0)
    specs, provisioned = env.provision(DEVICES, "rab", profile)
    assert all(p.password is None and p.cert_pem for p in provisioned)
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    ports = [n.mqtts_port for n in env.cluster.nodes]
    # Round robin over the nodes. Every node accepted an MQTT login before the fleet started (the cluster
    # helper waits for it), but a device refused once under load still moves on to the next node, so the
    # spread is checked loosely. Node 0, killed below, must hold devices for the test to mean anything.
    counts = _broker_counts(fleet)
    assert sum(counts.values()) == DEVICES and len(counts) >= 2 and counts[ports[0]] > 0, dict(counts)

    rollout = env.api.create_rollout(
        name="cluster-v1",
        model_version_id=env.version_ids[0],
        selector={"group": "rab"},
        start=True,
        waves=[{"percent": 100}],
        max_concurrent=6,
    )

    def confirmed() -> int:
        return int(env.api.rollout(rollout["id"])["deploy"]["by_state"].get("confirmed", 0))

    wait_for(lambda: confirmed() >= 3, 300, "the first devices to confirm")
    assert confirmed() < DEVICES, "the rollout finished before the node could be killed"
    # The node the server publishes through and consumes from: its gateway and its AMQP intake move on
    # too, as do that node's devices.
    victim = 0
    killed_at = time.monotonic()
    env.rc.kill_node(env.cluster, victim)
    moved = [a for a in fleet.agents.values() if a.broker[1] == ports[victim]]
    try:
        wait_for(
            lambda: all(a.connected and a.broker[1] != ports[victim] for a in fleet.agents.values()),
            120,
            "the killed node's devices to reconnect elsewhere",
        )
    except AssertionError:
        states = Counter((a.connected, a.broker[1]) for a in fleet.agents.values())
        raise AssertionError(f"devices (connected, broker port): {dict(states)}") from None
    failover_s = time.monotonic() - killed_at
    gateway, intake = env.stack.ctx.gateway, env.stack.ctx.amqp_intake
    assert gateway is not None and intake is not None
    wait_for(lambda: gateway.connected.is_set() and intake.connected.is_set(), 60, "the server to reconnect")
    assert intake.connects >= 2 and intake.node_url is not None
    assert str(env.cluster.nodes[victim].amqp_port) not in intake.node_url
    assert moved and not any(a.broker[1] == ports[victim] for a in moved)

    done = None

    def settled() -> bool:
        nonlocal done
        done = env.api.rollout(rollout["id"])
        return done["state"] in ("completed", "paused", "rolled_back")

    wait_for(settled, 600, "the rollout to settle")
    assert done is not None and done["state"] == "completed", done
    assert done["deploy"]["by_state"] == {"confirmed": DEVICES}
    sha = env.releases[0].model_sha256

    def active() -> set[str | None]:
        return {d["active_model_sha256"] for d in env.api.devices() if d["id"].startswith("rab-")}

    # A device's reported state is its own message after its confirm: it may be handled a little later.
    try:
        wait_for(lambda: active() == {sha}, 60, "every device to report the new model active")
    except AssertionError:
        counts = Counter(d["active_model_sha256"] for d in env.api.devices() if d["id"].startswith("rab-"))
        raise AssertionError(f"active models reported: {dict(counts)}") from None
    assert fleet.snapshot().totals["installs_confirmed"] == DEVICES

    # Telemetry: every report a device sent is stored once (seq de-duplicates redeliveries).
    sent = freeze_telemetry(fleet)
    ids = sorted(sent)
    assert sum(sent.values()) > 0

    def all_stored() -> bool:
        return stored_reports(env.api, ids) == sent

    wait_for(all_stored, 120, "every telemetry report to be stored", period=1.0)
    print(f"broker node killed: its {len(moved)} devices back on other nodes after {failover_s:.1f} s")


def _device_client(env: ClusterEnv, spec: object, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    client.tls_set_context(device_tls_context(spec.cert_pem, spec.key_pem, spec.ca_pem))  # type: ignore[attr-defined]
    return client


def test_devices_are_confined_to_their_own_topics(env: ClusterEnv) -> None:
    specs, _provisioned = env.provision(2, "acl")
    mine, other = specs
    node = env.cluster.nodes[2]
    events: list[str] = []
    client = _device_client(env, mine, mine.device_id)
    # Only a successful CONNACK counts: a loaded node may answer "Server unavailable" for a while (its log:
    # "client ID registration timed out"), and paho's loop connects again after a refusal.
    client.on_connect = lambda _c, _u, _f, reason, _p: events.append(
        "refused" if reason.is_failure else "connected"
    )
    client.on_disconnect = lambda *_a: events.append("closed")
    client.connect("127.0.0.1", node.mqtts_port)
    client.loop_start()
    try:
        wait_for(lambda: "connected" in events, 90, "the device to connect with its certificate")
        events.clear()
        # Its own status topic is allowed; another device's is refused (RabbitMQ closes the connection).
        client.publish(f"tf/{mine.device_id}/presence", b'{"online": true}', qos=1).wait_for_publish(10)
        wait_for(
            lambda: any(d["id"] == mine.device_id and d["online"] for d in env.api.devices()),
            30,
            "the server to see its presence",
        )
        client.publish(f"tf/{other.device_id}/presence", b'{"online": true}', qos=1)
        wait_for(lambda: "closed" in events, 30, "the broker to close the offending connection")
    finally:
        client.loop_stop()
    time.sleep(2)
    assert not any(d["id"] == other.device_id and d["online"] for d in env.api.devices())

    # A device certificate naming another client id is refused at login.
    events.clear()
    thief = _device_client(env, mine, other.device_id)
    thief.on_connect = lambda _c, _u, _f, reason, _p: events.append(str(reason))
    thief.connect("127.0.0.1", node.mqtts_port)
    thief.loop_start()
    try:
        wait_for(lambda: bool(events), 30, "the broker to answer")
    finally:
        thief.loop_stop()
    assert events[0] != "Success"

    # A revoked certificate can no longer log in (the server answers the broker's login check; the
    # broker caches answers for auth_cache_ms, so a fresh login is refused within that).
    env.api._request("POST", f"/devices/{mine.device_id}/certificate/revoke")
    time.sleep(env.cluster.auth_cache_ms / 1000 + 1)
    events.clear()
    again = _device_client(env, mine, mine.device_id)
    again.on_connect = lambda _c, _u, _f, reason, _p: events.append(str(reason))
    again.connect("127.0.0.1", node.mqtts_port)
    again.loop_start()
    try:
        wait_for(lambda: bool(events), 30, "the broker to answer")
    finally:
        again.loop_stop()
    assert events[0] != "Success"


def test_the_login_wait_names_a_node_that_refuses_logins(tmp_path: Path) -> None:
    """The cluster helper's readiness check (rabbitcluster.wait_mqtt_login) is a real MQTT 3.1.1 login,
    shown here against Mosquitto (no RabbitMQ needed): accepted with the server's account, and a node
    that keeps answering CONNACK != 0 makes it fail with the node's name and the broker's answer."""
    require_tools()
    rc = launcher()
    password = secrets.token_hex(8)
    with DevBroker(users={rc.SERVER_USER: password}, admin_users=[rc.SERVER_USER]) as broker:
        node = rc.Node(0, "tf1@localhost", 0, broker.port, 0, 0)
        cluster = rc.Cluster(str(tmp_path), str(tmp_path), "http://127.0.0.1:1", password, 0, [node])
        assert rc.mqtt_login(broker.port, rc.SERVER_USER, password, "tinyfleet-probe-t") == 0
        assert rc.wait_mqtt_login(cluster, 0, timeout=30) >= 0
        cluster.server_password = "not-" + password
        with pytest.raises(
            RuntimeError, match=rf"node tf1@localhost refuses MQTT logins on port {broker.port}"
        ):
            rc.wait_mqtt_login(cluster, 0, timeout=2)
