"""Log in to a broker as a device would, to see whether it accepts the credentials."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt


def try_login(port: int, username: str, password: str) -> bool:
    """One MQTT CONNECT to 127.0.0.1:port; whether the broker accepted it."""
    outcome: dict[str, bool] = {}
    done = threading.Event()

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: mqtt.ReasonCode, _p: object) -> None:
        outcome["ok"] = not reason.is_failure
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{username}-probe")
    client.username_pw_set(username, password)
    client.on_connect = on_connect
    client.connect("127.0.0.1", port)
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()
    return outcome.get("ok", False)


def connects(port: int, username: str, password: str, deadline_s: float = 20.0) -> bool:
    """Whether the broker accepts these credentials within the deadline (a refused attempt is retried:
    the reload is asynchronous by nature)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if try_login(port, username, password):
            return True
        time.sleep(0.2)
    return False
