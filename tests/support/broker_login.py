"""Logging in to a real Mosquitto as a device (tests/server/test_broker_auth.py, test_bulk_provision.py)
under the ACL the deployment uses."""

from __future__ import annotations

import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.paths import REPO

ACL = REPO / "deploy" / "mosquitto.acl"


def connect_as(port: int, user: str, password: str) -> tuple[mqtt.Client, dict[str, Any]]:
    """An MQTT v5 client logged in to 127.0.0.1:port as user (loop started); result holds the CONNACK
    reason ("reason") and the SUBACK codes by message id ("suback")."""
    result: dict[str, Any] = {"done": threading.Event()}
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"{user}-test", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(user, password)

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result["reason"] = reason
        result["done"].set()

    def on_subscribe(_c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        result.setdefault("suback", {})[mid] = codes

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert result["done"].wait(10)
    return client, result
