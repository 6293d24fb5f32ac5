"""tinyfleet.server.devbroker: a real Mosquitto on a free port, with passwords and the per-device ACL."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tinyfleet.server.devbroker import BrokerError, DevBroker, find_mosquitto


@pytest.fixture(autouse=True)
def _need_mosquitto() -> None:
    try:
        find_mosquitto()
    except BrokerError as exc:
        pytest.skip(str(exc))


def connect(broker: DevBroker, user: str | None, password: str | None) -> tuple[mqtt.Client, str]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user or "anon", protocol=mqtt.MQTTv5)
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


def test_acl_confines_each_device_to_its_own_topics() -> None:
    users = {"srv": "s3cret", "dev-a": "pa", "dev-b": "pb"}
    with DevBroker(users=users, admin_users=["srv"]) as broker:
        _, refused = connect(broker, "dev-a", "wrong")
        assert refused != "Success"
        dev_a, ok = connect(broker, "dev-a", "pa")
        assert ok == "Success"
        seen: list[str] = []
        got = threading.Event()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            seen.append(msg.topic)
            got.set()

        dev_a.on_message = on_message
        dev_a.subscribe([("tf/dev-a/#", 1), ("tf/dev-b/#", 1)])
        srv, _ = connect(broker, "srv", "s3cret")
        srv_seen: list[str] = []
        srv_got = threading.Event()

        def on_srv_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            srv_seen.append(msg.topic)
            if msg.topic == "tf/dev-a/status":
                srv_got.set()

        srv.on_message = on_srv_message
        srv.subscribe("tf/+/status", 1)
        # The admin can write anywhere; dev-a receives only its own tree.
        srv.publish("tf/dev-b/desired", b"{}", qos=1).wait_for_publish(5)
        srv.publish("tf/dev-a/desired", b"{}", qos=1).wait_for_publish(5)
        assert got.wait(5)
        # dev-a's write into dev-b's tree is dropped by the broker; its own arrives (and comes after).
        dev_a.publish("tf/dev-b/status", b"{}", qos=1).wait_for_publish(5)
        dev_a.publish("tf/dev-a/status", b"{}", qos=1).wait_for_publish(5)
        assert srv_got.wait(5)
        for client in (dev_a, srv):
            client.disconnect()
            client.loop_stop()
        assert "tf/dev-b/desired" not in seen
        assert srv_seen == ["tf/dev-a/status"]


def test_external_password_file_and_reload(tmp_path: Path) -> None:
    from tinyfleet.server.services.credentials import hash_password, write_password_file

    passwd = tmp_path / "passwd"
    write_password_file(passwd, [("srv", hash_password("one"))])
    with DevBroker(password_file=passwd, admin_users=["srv"]) as broker:
        _, before = connect(broker, "dev-x", "px")
        assert before != "Success"
        write_password_file(passwd, [("srv", hash_password("one")), ("dev-x", hash_password("px"))])
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
