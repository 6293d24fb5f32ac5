"""The ACL limits of PROTOCOL 4.6, checked from the device's own credentials: the kit logs in as the
device would (its provisioning answer) while the device is stopped (the broker takes the username as
client id, so a second login would drop the device), and tries what a device must not do."""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt

from tinyfleet.conformance.environment import Failed, close_service, connect_service, wait_until
from tinyfleet.conformance.scenarios import Context

OTHER = "conformance-other"  # another device's id: the ACL is per username, no need to provision it
SETTLE = 2.0  # seconds a message has to arrive before the kit calls it dropped
# Another device's topics (neither direction), and the server's topics (written only by the server).
FORBIDDEN_READS = ("desired", "chunk", "reported", "presence", "status", "telemetry", "chunk/req")
FORBIDDEN_WRITES = ("reported", "status", "telemetry", "chunk/req", "presence", "desired", "chunk")


def _collect(client: mqtt.Client, got: list[tuple[str, bytes]]) -> None:
    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, bytes(msg.payload)))

    client.on_message = on_message


def acl_limits(ctx: Context) -> str:
    env = ctx.env
    user, password = env.answer["mqtt"]["username"], env.answer["mqtt"]["password"]
    me, other = f"tf/{env.device_id}", f"tf/{OTHER}"
    env.device.stop()
    device = connect_service(env.broker.host, env.broker.port, user, password)
    player = env.player()
    try:
        as_device: list[tuple[str, bytes]] = []
        seen: list[tuple[str, bytes]] = []
        _collect(device, as_device)
        _collect(player, seen)
        subs = [(f"{other}/{t}", 1) for t in FORBIDDEN_READS] + [(f"{me}/desired", 1)]
        device.subscribe(subs)
        player.subscribe("tf/#", qos=1)
        time.sleep(1.0)
        # The control: what it may read arrives, so the refusals below are the ACL's, not a dead login.
        player.publish(f"{me}/desired", b"acl-probe", qos=1)
        for t in FORBIDDEN_READS:
            player.publish(f"{other}/{t}", b"acl-probe", qos=1)
        # Not JSON: a broker that wrongly let it through would hand the device a message it ignores.
        writes = [f"{other}/{t}" for t in FORBIDDEN_WRITES] + [f"{me}/desired", f"{me}/chunk"]
        for topic in writes:
            device.publish(topic, b"acl-probe-from-device", qos=1)
        device.publish(f"{me}/chunk/req", b"acl-probe-allowed", qos=1)  # the control of the writes
        time.sleep(SETTLE)
        try:
            wait_until(lambda: any(t == f"{me}/desired" for t, _ in as_device), 10, "its own desired state")
            wait_until(lambda: any(p == b"acl-probe-allowed" for _, p in seen), 10, "its own chunk request")
        except Failed as exc:
            raise Failed(f"the device's own login did not work as the ACL allows: {exc}") from None
        read = sorted({t for t, _ in as_device if t.startswith(other)})
        if read:
            raise Failed(f"the device's credentials could read {', '.join(read)}")
        written = sorted({t for t, p in seen if p == b"acl-probe-from-device"})
        if written:
            raise Failed(f"the device's credentials could write {', '.join(written)}")
    finally:
        close_service(device)
        close_service(player)
        mark = time.monotonic()
        env.device.start()
    wait_until(
        lambda: any(m.payload and m.json().get("online") is True for m in env.spy.since(mark, "presence")),
        ctx.timeout,
        'presence {"online": true} after the restart',
    )
    return (
        f"could not read {len(FORBIDDEN_READS)} topics of another device nor write {len(writes)} topics "
        "of another device or of the server; its own topics worked"
    )
