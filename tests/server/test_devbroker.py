"""tinyfleet.server.devbroker: a real Mosquitto on a free port, with passwords and the per-device ACL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tinyfleet.server.devbroker import BrokerError, DevBroker, find_mosquitto

SRV = "tinyfleet-srv"  # the gateway's account: a name no device may have (services/ids.py)


@pytest.fixture(autouse=True)
def _need_mosquitto() -> None:
    try:
        find_mosquitto()
    except BrokerError as exc:
        pytest.skip(str(exc))


def connect(
    broker: DevBroker, user: str | None, password: str | None, client_id: str | None = None
) -> tuple[mqtt.Client, str]:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id or user or "anon", protocol=mqtt.MQTTv5
    )
    if user:
        client.username_pw_set(user, password)
    result: list[str] = []
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object) -> None:
        result.append(str(reason))
        done.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port)
    client.loop_start()
    assert done.wait(10), "no CONNACK"
    return client, result[0]


def test_open_broker_starts_and_stops() -> None:
    broker = DevBroker().start()
    try:
        assert broker.running and broker.port > 0
        client, reason = connect(broker, None, None)
        assert reason == "Success"
        client.disconnect()
        client.loop_stop()
    finally:
        broker.stop()
    assert not broker.running


def test_acl_confines_each_device_to_its_own_topics_and_directions() -> None:
    users = {SRV: "s3cret", "dev-a": "pa", "dev-b": "pb"}
    with DevBroker(users=users, admin_users=[SRV]) as broker:
        _, refused = connect(broker, "dev-a", "wrong")
        assert refused != "Success"
        dev_a, ok = connect(broker, "dev-a", "pa")
        assert ok == "Success"
        seen: list[str] = []
        got = threading.Event()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            seen.append(msg.topic)
            if msg.topic == "tf/dev-a/chunk":
                got.set()

        dev_a.on_message = on_message
        subscribed = threading.Event()
        dev_a.on_subscribe = lambda *_a: subscribed.set()
        dev_a.subscribe(
            [(f"tf/{dev}/{kind}", 1) for dev in ("dev-b", "dev-a") for kind in ("desired", "chunk")]
        )
        assert subscribed.wait(5)
        srv, _ = connect(broker, SRV, "s3cret")
        srv_seen: list[str] = []
        srv_got = threading.Event()

        def on_srv_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            srv_seen.append(msg.topic)
            if msg.topic == "tf/dev-a/status":
                srv_got.set()

        srv.on_message = on_srv_message
        srv_subscribed = threading.Event()
        srv.on_subscribe = lambda *_a: srv_subscribed.set()
        srv.subscribe([("tf/+/status", 1), ("tf/+/desired", 1), ("tf/+/chunk", 1)])
        assert srv_subscribed.wait(5)
        # The gateway writes anywhere; dev-a reads only its own desired and chunk, never dev-b's.
        for topic in ("tf/dev-b/desired", "tf/dev-b/chunk", "tf/dev-a/desired", "tf/dev-a/chunk"):
            srv.publish(topic, b"{}", qos=1).wait_for_publish(5)
        assert got.wait(5)
        assert seen == ["tf/dev-a/desired", "tf/dev-a/chunk"]
        srv_seen.clear()  # its own publications, echoed back
        # dev-a may not forge its own desired state or chunks, nor write into dev-b's tree; its own
        # status goes through (and comes after the dropped ones).
        for topic in ("tf/dev-a/desired", "tf/dev-a/chunk", "tf/dev-b/status", "tf/dev-a/status"):
            dev_a.publish(topic, b"{}", qos=1).wait_for_publish(5)
        assert srv_got.wait(5)
        for client in (dev_a, srv):
            client.disconnect()
            client.loop_stop()
        assert srv_seen == ["tf/dev-a/status"]


def test_admin_users_must_be_service_names() -> None:
    with pytest.raises(BrokerError, match="could also be a device id"):
        DevBroker(users={"srv": "x"}, admin_users=["srv"])


def test_a_credential_is_its_own_client_id_only() -> None:
    """use_username_as_clientid: dev-b connecting with dev-a's (or the gateway's) client id is logged
    in as dev-b and disconnects no one."""
    with DevBroker(users={SRV: "s", "dev-a": "pa", "dev-b": "pb"}, admin_users=[SRV]) as broker:
        assert "use_username_as_clientid true" in (broker.directory / "mosquitto.conf").read_text()  # type: ignore[operator]
        victims = [connect(broker, SRV, "s")[0], connect(broker, "dev-a", "pa")[0]]
        dropped = threading.Event()
        for victim in victims:
            victim.on_disconnect = lambda *_a: dropped.set()
        for stolen in (SRV, "dev-a"):
            thief, reason = connect(broker, "dev-b", "pb", client_id=stolen)
            assert reason == "Success"
            time.sleep(0.3)
            thief.disconnect()
            thief.loop_stop()
        assert not dropped.wait(1.0)
        assert all(victim.is_connected() for victim in victims)
        for victim in victims:
            victim.disconnect()
            victim.loop_stop()


def test_external_password_file_and_reload(tmp_path: Path) -> None:
    from tinyfleet.server.services.credentials import hash_password, write_password_file

    passwd = tmp_path / "passwd"
    write_password_file(passwd, [(SRV, hash_password("one"))])
    with DevBroker(password_file=passwd, admin_users=[SRV]) as broker:
        _, before = connect(broker, "dev-x", "px")
        assert before != "Success"
        write_password_file(passwd, [(SRV, hash_password("one")), ("dev-x", hash_password("px"))])
        broker.reload()
        for _ in range(50):  # the broker applies SIGHUP asynchronously
            client, reason = connect(broker, "dev-x", "px")
            client.loop_stop()
            if reason == "Success":
                break
        assert reason == "Success"


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerError):
        DevBroker(users={"a": "b"}, password_file=tmp_path / "p")
    with pytest.raises(BrokerError, match="invalid MQTT user"):
        DevBroker(users={"bad:name": "x"}).start()


def test_kill_and_restart_on_the_same_port_with_extra_config(tmp_path: Path) -> None:
    broker = DevBroker(workdir=tmp_path / "b", extra_config=["max_keepalive 120"]).start()
    try:
        assert broker.anonymous
        assert "max_keepalive 120" in (tmp_path / "b" / "mosquitto.conf").read_text()
        port, first_pid = broker.port, broker.pid
        broker.kill()
        assert not broker.running and broker.port == port
        with pytest.raises(BrokerError, match="not running"):
            broker.reload()
        broker.restart()
        assert broker.running and broker.port == port and broker.pid != first_pid
        client, reason = connect(broker, None, None)
        assert reason == "Success"
        client.disconnect()
        client.loop_stop()
        with pytest.raises(BrokerError, match="still running"):
            broker.restart()
    finally:
        broker.stop()
    assert "New client connected" in broker.log_text()  # the log outlives stop() in a workdir


def test_own_acl_file_with_a_password_file(tmp_path: Path) -> None:
    from tinyfleet.server.services.credentials import hash_password, write_password_file

    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    write_password_file(passwd, [("dev-a", hash_password("pa"))])
    acl.write_text("pattern write tf/%u/status\n")
    with pytest.raises(BrokerError, match="ACL file needs users"):
        DevBroker(acl_file=acl)
    with DevBroker(password_file=passwd, acl_file=acl) as broker:
        assert not broker.anonymous
        assert f"acl_file {acl}" in (broker.directory / "mosquitto.conf").read_text()  # type: ignore[operator]
        _, anonymous = connect(broker, None, None)
        assert anonymous != "Success"
        client, reason = connect(broker, "dev-a", "pa")
        assert reason == "Success"
        client.disconnect()
        client.loop_stop()
