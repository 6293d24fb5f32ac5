"""Issue 16: every replica consumes device traffic, so one device's messages may be handled out of order.
Presence carries its connection's (boot, seq) and an older one is dropped (PROTOCOL 4.6 "Presence
order"); a batch locks its devices' rows in device id order, so replicas' batches never deadlock."""

from __future__ import annotations

import json
import secrets
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import event
from sqlmodel import Session

from tests.support.e2e_harness import SERVER_USER, require_tools, wait_for
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.models import Device
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.server.services.devices import RETIRED_BOOTS
from tinyfleet.server.services.messages import DeviceMessages, StoreConflict, lock_order
from tinyfleet.server.stack import run_stack
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import FleetConfig, LocalFleet
from tinyfleet.sim.profiles import FleetMix, get_profile
from tinyfleet.sim.server_api import ServerApi


def _presence(online: bool, boot: int | None = None, seq: int | None = None) -> bytes:
    doc: dict[str, Any] = {"online": online}
    if boot is not None:
        doc.update(boot=boot, seq=seq)
    return json.dumps(doc).encode()


def _online(api: Any, device_id: str) -> bool:
    with Session(api.ctx.db) as session:
        device = session.get(Device, device_id)
        assert device is not None
        return device.online


def test_an_older_presence_is_dropped_a_newer_one_applied(api: Any) -> None:
    api.ok("POST", "/api/devices", 201, json={"id": "dev1", "hardware_class": 1})
    msgs = DeviceMessages(api.ctx.db, default_chunk_size=1024)
    topic = "tf/dev1/presence"
    steps = [
        # (presence, online afterwards, stale_presence count afterwards)
        (_presence(True, 7, 2), True, 0),  # connection 2 of boot 7 is up
        (_presence(False, 7, 1), True, 1),  # connection 1's will, handled late: older, dropped
        (_presence(True, 7, 2), True, 1),  # a redelivery of the same online: harmless
        (_presence(False, 7, 2), False, 1),  # connection 2 dropped: its will
        (_presence(True, 7, 2), False, 2),  # connection 2's online handled after its own will: dropped
        (_presence(True, 7, 3), True, 2),  # connection 3
        (_presence(False, 9, 1), False, 2),  # a boot not seen before: applied as it comes
        (_presence(True), True, 2),  # no (boot, seq): applied as it comes
        (_presence(False, 9, 0), False, 2),  # nothing stored to compare with: applied
    ]
    for payload, online, stale in steps:
        msgs.handle(topic, payload)
        assert _online(api, "dev1") is online, payload
        assert msgs.stats.snapshot()["events"].get("stale_presence", 0) == stale, payload
    assert not msgs.stats.snapshot()["malformed"]
    # Half an order (boot without seq) is refused by the schema.
    msgs.handle(topic, b'{"online": true, "boot": 7}')
    assert msgs.stats.snapshot()["malformed"]["presence"] == 1
    assert not _online(api, "dev1")


def test_a_boot_the_device_left_cannot_take_its_presence_back(api: Any) -> None:
    """PROTOCOL 4.6 across boots: boots are random, not ordered, so the server remembers which boots it
    moved away from; a late will (or redelivered online) of such a boot is dropped."""
    api.ok("POST", "/api/devices", 201, json={"id": "dev2", "hardware_class": 1})
    msgs = DeviceMessages(api.ctx.db, default_chunk_size=1024)
    topic = "tf/dev2/presence"
    steps = [
        (_presence(True, 7, 1), True, 0),  # boot 7, connection 1
        (_presence(True, 9, 1), True, 0),  # the device rebooted: boot 9 comes online
        (_presence(False, 7, 1), True, 1),  # boot 7's will, published late (its node noticed late)
        (_presence(True, 7, 1), True, 2),  # boot 7's online redelivered: dropped too
        (_presence(False, 9, 1), False, 2),  # boot 9's connection dies
        (_presence(True, 11, 1), True, 2),  # rebooted again
        (_presence(False, 9, 1), True, 3),  # both earlier boots' wills, late: dropped
        (_presence(False, 7, 1), True, 4),
        # An older boot the server never heard of, handled late, cannot be told from a new boot: applied
        # (so boot 11 counts as left) ...
        (_presence(False, 5, 3), False, 4),
        # ... until boot 11's next connection: newer than the last one applied from it, so boot 11 is
        # the live one after all, and its older connection's will stays dropped.
        (_presence(True, 11, 2), True, 4),
        (_presence(False, 11, 1), True, 5),
        (_presence(False, 5, 3), True, 6),  # and boot 5 is now the one left
    ]
    for payload, online, stale in steps:
        msgs.handle(topic, payload)
        assert _online(api, "dev2") is online, payload
        assert msgs.stats.snapshot()["events"].get("stale_presence", 0) == stale, payload
    with Session(api.ctx.db) as session:
        device = session.get(Device, "dev2")
        assert device is not None
        assert (device.presence_boot, device.presence_seq) == (11, 2)
        assert device.presence_retired == [[5, 3], [9, 1], [7, 1]]
    # Only the last few boots are remembered: a will from further back is not recognised any more.
    for boot in range(100, 100 + RETIRED_BOOTS):
        msgs.handle(topic, _presence(True, boot, 1))
    msgs.handle(topic, _presence(False, 9, 1))  # retired, but forgotten by now
    assert not _online(api, "dev2")
    msgs.handle(topic, _presence(True, 103, 2))
    msgs.handle(topic, _presence(False, 102, 1))  # still remembered
    assert _online(api, "dev2")
    assert not msgs.stats.snapshot()["malformed"]


def test_lock_order_sorts_by_device_and_keeps_each_devices_order() -> None:
    items = [
        ("tf/b/status", b"1"),
        ("tf/a/presence", b"2"),
        ("tf/b/presence", b"3"),
        ("tf/a/reported", b"4"),
        ("junk", b"5"),
    ]
    assert [items[i][1] for i in lock_order(items)] == [b"5", b"2", b"4", b"1", b"3"]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_batch_locks_its_devices_first_in_id_order(api: Any) -> None:
    for device_id in ("dev-a", "dev-b", "dev-c"):
        api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": 1})
    msgs = DeviceMessages(api.ctx.db, default_chunk_size=1024)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_rest: Any) -> None:
        if "FOR UPDATE" in statement:
            statements.append(f"{statement} {params}")

    event.listen(api.ctx.db, "before_cursor_execute", seen)
    try:
        batch = [
            ("tf/dev-c/presence", _presence(True, 1, 1)),
            ("tf/dev-a/presence", _presence(True, 1, 1)),
            ("tf/dev-b/chunk/req", b"[]"),  # locks nothing: not in the lock
        ]
        msgs.handle_batch(batch, lambda _out: None)
    finally:
        event.remove(api.ctx.db, "before_cursor_execute", seen)
    first = statements[0]
    assert "ORDER BY devices.id" in first and "'dev-a'" in first and "'dev-c'" in first, statements
    assert "'dev-b'" not in first and first.index("'dev-a'") < first.index("'dev-c'")
    assert _online(api, "dev-a") and _online(api, "dev-c")


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_two_replicas_batches_in_opposite_orders_do_not_deadlock(api: Any) -> None:
    """Two gateways' batches touch the same devices' rows in opposite arrival orders, started together
    many times; before the rows were locked in id order PostgreSQL aborted some as deadlocks."""
    ids = [f"dl-{i:02d}" for i in range(12)]
    for device_id in ids:
        api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": 1})
    rounds = 25
    start = threading.Barrier(2)
    conflicts: list[BaseException] = []

    def replica(order: list[str], boot: int) -> None:
        msgs = DeviceMessages(api.ctx.db, default_chunk_size=1024)
        for n in range(rounds):
            batch = [(f"tf/{d}/presence", _presence(n % 2 == 0, boot, n)) for d in order]
            start.wait(30)
            try:
                msgs.handle_batch(batch, lambda _out: None)
            except StoreConflict as exc:
                conflicts.append(exc)

    threads = [
        threading.Thread(target=replica, args=(ids, 1)),
        threading.Thread(target=replica, args=(ids[::-1], 2)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert not conflicts, f"{len(conflicts)} of {2 * rounds} batches deadlocked: {conflicts[0]}"


# ----- the same with a real device agent (C runtime), a real Mosquitto and the real gateway ---------------

WATCHER = "tinyfleet-watch"  # a broker account of the test's own: the gateway's would kick the gateway off


class _Watcher:
    """An MQTT client on the broker's admin ACL that records every presence message as published."""

    def __init__(self, broker: Any, password: str) -> None:
        self.seen: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=WATCHER, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(WATCHER, password)
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe("tf/+/presence", qos=1)
        self.client.on_subscribe = lambda *_a: self._ready.set()
        self.client.on_message = self._message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._ready.wait(20), "the watcher did not subscribe"

    def _message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.raw.append(bytes(msg.payload))
            self.seen.append(json.loads(msg.payload))

    def find(self, **want: Any) -> bytes | None:
        with self._lock:
            for doc, raw in zip(self.seen, self.raw, strict=True):
                if all(doc.get(k) == v for k, v in want.items()):
                    return raw
        return None

    def publish(self, topic: str, payload: bytes) -> None:
        """As if the broker delivered it (again) now: QoS 1, not retained."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _presence_row(stack: Any, device_id: str) -> tuple[bool, int | None, int | None]:
    with Session(stack.ctx.db) as session:
        device = session.get(Device, device_id)
        assert device is not None
        return device.online, device.presence_boot, device.presence_seq


@pytest.mark.slow
def test_a_real_devices_late_wills_leave_it_online(tmp_path: Path) -> None:
    """A device's connection dies without DISCONNECT (the broker publishes its will), it reconnects (seq+1);
    then it reboots (a new agent run: another boot). Each time the old connection's will, exactly as the
    broker published it, is delivered again after the new `online` has been handled, as a will published
    late by another node or handled late by another replica would be: the server keeps the device online."""
    require_tools()
    server_password, watch_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    passwd = tmp_path / "mosquitto.passwd"
    accounts = [(SERVER_USER, hash_password(server_password)), (WATCHER, hash_password(watch_password))]
    write_password_file(passwd, accounts)
    with ExitStack() as stack:
        broker = stack.enter_context(DevBroker(password_file=passwd, admin_users=[SERVER_USER, WATCHER]))
        url = f"mqtt://{SERVER_USER}:{server_password}@{broker.host}:{broker.port}"
        server = stack.enter_context(
            run_stack(url, data_dir=tmp_path / "server", mqtt_password_file=passwd, tick_seconds=0.2)
        )
        api = ServerApi(server.url, server.token)
        stack.callback(api.close)
        specs, provisioned = provision_fleet(api, 1, FleetMix.single(get_profile("lan")), "wseq", "wseq", 3)
        broker.reload()  # the server rewrote the password file (keeping the watcher's line)
        device_id, topic = specs[0].device_id, f"tf/{specs[0].device_id}/presence"
        watcher = _Watcher(broker, watch_password)
        stack.callback(watcher.close)
        config = FleetConfig(broker.host, broker.port, provisioned[0].trusted_keys, tuple(specs))

        def stale() -> int:
            return int(api.gateway_stats()["events"].get("stale_presence", 0))

        fleet = LocalFleet(config).start()
        stack.callback(fleet.stop)  # stop() twice is harmless
        assert fleet.wait_online(timeout=60)
        wait_for(lambda: _presence_row(server, device_id)[0], 30, "the server to see the device online")
        _online_now, boot, seq = _presence_row(server, device_id)
        assert boot is not None and seq == 1

        # 1. The connection is cut (no DISCONNECT): the broker publishes the will of connection 1, and
        # the device comes back as connection 2 of the same boot.
        agent = fleet.agents[device_id]
        fleet.call(lambda: agent.drop_connection(1.0))
        wait_for(lambda: watcher.find(online=False, boot=boot, seq=1) is not None, 30, "the broker's will")
        wait_for(lambda: _presence_row(server, device_id) == (True, boot, 2), 30, "connection 2 online")
        will = watcher.find(online=False, boot=boot, seq=1)
        assert will is not None
        before = stale()
        watcher.publish(topic, will)
        wait_for(lambda: stale() == before + 1, 30, "the late will to be dropped")
        assert _presence_row(server, device_id) == (True, boot, 2)

        # 2. The device reboots: the first run goes away without DISCONNECT (its will is published), and
        # a new run with another boot connects. The old boot's will, delivered again late, is dropped.
        fleet.stop()
        wait_for(lambda: watcher.find(online=False, boot=boot, seq=2) is not None, 30, "boot 1's last will")
        rebooted = LocalFleet(config).start()
        stack.callback(rebooted.stop)
        assert rebooted.wait_online(timeout=60)
        wait_for(
            lambda: _presence_row(server, device_id)[0] and _presence_row(server, device_id)[1] != boot,
            30,
            "the new boot online",
        )
        _online_now, new_boot, new_seq = _presence_row(server, device_id)
        old_will = watcher.find(online=False, boot=boot, seq=2)
        assert old_will is not None
        before = stale()
        watcher.publish(topic, old_will)
        wait_for(lambda: stale() == before + 1, 30, "the old boot's late will to be dropped")
        assert _presence_row(server, device_id) == (True, new_boot, new_seq)
        assert next(iter(api.devices(group="wseq")))["online"]
