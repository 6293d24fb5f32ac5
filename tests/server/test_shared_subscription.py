"""How Mosquitto treats a shared-subscription member whose persistent session is offline (docs/DEPLOY.md,
"Replicas"): it still gets its round-robin share, queued in its session, and receives it once it comes
back under the same client id. So a killed replica must be restarted under its name: its share is neither
lost nor handed to the live members meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tinyfleet.server.devbroker import DevBroker

TOPIC = "$share/tinyfleet/tf/+/status"


def _member(broker: DevBroker, name: str, got: list[bytes]) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    client.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    client.on_subscribe = lambda *_a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe(TOPIC, 1)
    assert subscribed.wait(10)
    return client


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_an_offline_members_share_waits_in_its_session(mosquitto: DevBroker) -> None:
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    a = _member(mosquitto, "tinyfleet-a", got_a)
    b = _member(mosquitto, "tinyfleet-b", got_b)
    # a dies without DISCONNECT (as a SIGKILLed replica): the broker sees the socket close.
    a.loop_stop()
    a.socket().close()  # type: ignore[union-attr]
    time.sleep(1.0)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv5)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    sent = [str(i).encode() for i in range(20)]
    for payload in sent:
        publisher.publish("tf/dev-1/status", payload, qos=1).wait_for_publish(10)
    assert _wait(lambda: len(got_b) >= 10)
    time.sleep(1.0)
    assert len(got_b) < len(sent)  # the live member did not get the offline member's share
    # a comes back under its name: its session hands over what was queued for it.
    got_a.clear()
    a2 = _member(mosquitto, "tinyfleet-a", got_a)
    assert _wait(lambda: len(got_a) + len(got_b) == len(sent)), (len(got_a), len(got_b))
    assert sorted(got_a + got_b) == sorted(sent)  # nothing lost, nothing twice
    for client in (a2, b, publisher):
        client.disconnect()
        client.loop_stop()
