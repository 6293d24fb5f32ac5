"""Device credentials enforced by a real Mosquitto using deploy/mosquitto.acl and the password file the
server writes: a provisioned device logs in and reaches only its own topics."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker_login import ACL, connect_as
from tinyfleet.server.services.credentials import hash_password
from tinyfleet.server.stack import run_stack


def _wait(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_provisioned_credentials_and_acl(tmp_path, dev_broker):
    passwd = tmp_path / "mosquitto.passwd"
    # the broker needs the gateway's entry at start; the server rewrites the file with the same user
    passwd.write_text(f"tinyfleet-server:{hash_password('gateway-secret')}\n")
    broker = dev_broker(password_file=passwd, acl_file=ACL)
    url = f"mqtt://tinyfleet-server:gateway-secret@127.0.0.1:{broker.port}"
    with run_stack(url, data_dir=tmp_path / "server", mqtt_password_file=passwd) as st:
        assert _wait(lambda: st.ctx.gateway.connected.is_set(), 20), "gateway could not log in"
        with st.client() as c:
            creds = c.post("/api/devices", json={"id": "dev-a", "hardware_class": 1}).json()["mqtt"]
            c.post("/api/devices", json={"id": "dev-b", "hardware_class": 1}).raise_for_status()
        text = passwd.read_text()
        assert "tinyfleet-server:$7$" in text and "dev-a:$7$" in text and "dev-b:$7$" in text
        broker.reload()
        time.sleep(0.3)  # SIGHUP is asynchronous; mosquitto cannot be asked whether it has reloaded
        for dev in ("dev-a", "dev-b"):
            st.ctx.gateway.publish_desired(dev, {"action_id": None, "operation": "none", "for": dev})
        good, res = connect_as(broker.port, "dev-a", creds["password"])
        assert not res["reason"].is_failure, res["reason"]
        seen: list[str] = []
        good.on_message = lambda _c, _u, msg: seen.append(msg.topic)
        # retained messages arrive in subscription order: once our own has come, the foreign
        # one would have come before it if the ACL had let it through
        good.subscribe("tf/dev-b/desired", qos=1)
        good.subscribe("tf/dev-a/desired", qos=1)
        assert _wait(lambda: "tf/dev-a/desired" in seen)
        assert seen == ["tf/dev-a/desired"]
        # writing into another device's subtree is dropped; writing into its own goes through
        good.publish("tf/dev-b/presence", b'{"online": true}', qos=1).wait_for_publish(5)
        good.publish("tf/dev-a/presence", b'{"online": true}', qos=1).wait_for_publish(5)
        with st.client() as c:
            assert _wait(lambda: c.get("/api/devices/dev-a").json()["online"])
            assert c.get("/api/devices/dev-b").json()["online"] is False
            assert c.get("/api/gateway/stats").json()["received"]["presence"] == 1
        good.disconnect()
        good.loop_stop()
        bad, res = connect_as(broker.port, "dev-a", "wrong password")
        assert res["reason"].is_failure
        bad.loop_stop()


def test_gateway_keeps_its_identity_and_session(tmp_path, dev_broker):
    """A device row named like the gateway (written before the id rules) never reaches the password file,
    and a device connecting with the gateway's client id does not disconnect the gateway."""
    from sqlmodel import Session

    from tinyfleet.server.models import Device

    passwd = tmp_path / "mosquitto.passwd"
    passwd.write_text(f"tinyfleet-server:{hash_password('gateway-secret')}\n")
    broker = dev_broker(password_file=passwd, admin_users=["tinyfleet-server"])
    url = f"mqtt://tinyfleet-server:gateway-secret@127.0.0.1:{broker.port}"
    with run_stack(url, data_dir=tmp_path / "server", mqtt_password_file=passwd) as st:
        assert _wait(lambda: st.ctx.gateway.connected.is_set(), 20)
        with Session(st.ctx.db) as session:
            session.add(
                Device(
                    id="tinyfleet-server",
                    hardware_class=1,
                    mqtt_password_hash=hash_password("x"),
                    created_at=0.0,
                )
            )
            session.commit()
        with st.client() as c:
            creds = c.post("/api/devices", json={"id": "dev-a", "hardware_class": 1}).json()["mqtt"]
        st.ctx.sync_password_file()
        users = [line.split(":")[0] for line in passwd.read_text().splitlines()]
        assert users == ["tinyfleet-server", "dev-a"]
        broker.reload()
        time.sleep(0.3)
        connects = st.ctx.stats.snapshot()["events"]["connects"]
        thief = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="tinyfleet-server",
            protocol=mqtt.MQTTv5,
        )
        thief.username_pw_set("dev-a", creds["password"])
        done = threading.Event()
        thief.on_connect = lambda *_a: done.set()
        thief.connect("127.0.0.1", broker.port)
        thief.loop_start()
        assert done.wait(10)
        time.sleep(1.0)
        assert st.ctx.gateway.connected.is_set()
        assert st.ctx.stats.snapshot()["events"]["connects"] == connects  # never kicked, never reconnected
        thief.disconnect()
        thief.loop_stop()
