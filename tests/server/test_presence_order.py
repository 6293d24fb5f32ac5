"""Issue 16: every replica consumes device traffic, so one device's messages may be handled out of order.
Presence carries its connection's (boot, seq) and an older one is dropped (PROTOCOL 4.6 "Presence
order"); a batch locks its devices' rows in device id order, so replicas' batches never deadlock."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import Session

from tinyfleet.server.models import Device
from tinyfleet.server.services.messages import DeviceMessages, StoreConflict, lock_order


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


def test_an_older_presence_is_dropped_a_newer_one_applied(api):
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
        (_presence(False, 9, 1), False, 2),  # another boot: not comparable, applied as it comes
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


def test_lock_order_sorts_by_device_and_keeps_each_devices_order():
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
def test_a_batch_locks_its_devices_first_in_id_order(api):
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
def test_two_replicas_batches_in_opposite_orders_do_not_deadlock(api):
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
