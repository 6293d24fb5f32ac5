"""The gateway worker handles device messages in batches, one transaction each (issue 12): a message
that is malformed or fails is undone alone, the others are applied in arrival order."""

from __future__ import annotations

import json
import threading
from typing import Any

from sqlalchemy import event
from sqlmodel import Session

from tinyfleet.server.models import Device
from tinyfleet.server.services import devices as devsvc
from tinyfleet.server.services.messages import DeviceMessages, Outgoing


def _reported(phase: str) -> bytes:
    sha = "ab" * 32
    obj = {
        "runtime_version": 0x100,
        "hardware_class": 1,
        "phase": phase,
        "active_slot": 0,
        "slots": [{"valid": True, "model_sha256": sha, "sequence": 1}],
    }
    return json.dumps(obj).encode()


def _batch() -> list[tuple[str, bytes]]:
    return [
        ("tf/dev1/presence", b'{"online": true}'),
        ("tf/dev1/reported", _reported("idle")),
        ("tf/dev2/presence", b"{not json"),  # malformed: refused before any change
        ("tf/dev3/presence", b'{"online": true}'),  # fails after its change (see _failing_presence)
        ("tf/dev2/presence", b'{"online": "yes"}'),  # malformed after reading the device
        ("tf/ghost/presence", b'{"online": true}'),  # unknown device
        ("tf/dev1/reported", _reported("downloading")),  # later than the first: it wins
        ("tf/dev2/presence", b'{"online": true}'),
        ("tf/dev1/chunk/req", b"[]"),  # malformed chunk request: answered with a chunk error
    ]


def _failing_presence(monkeypatch: Any) -> None:
    original = devsvc.set_presence

    def set_presence(session: Session, device: Device, online: bool, now: float, *order: Any) -> bool:
        came = original(session, device, online, now, *order)
        if device.id == "dev3":
            session.flush()  # its change is in the transaction: undone with its savepoint
            raise RuntimeError("simulated failure")
        return came

    monkeypatch.setattr(devsvc, "set_presence", set_presence)


def _check(api: Any, stats: dict[str, dict[str, int]]) -> None:
    with Session(api.ctx.db) as session:
        dev1, dev2, dev3 = (session.get(Device, d) for d in ("dev1", "dev2", "dev3"))
        assert dev1 is not None and dev2 is not None and dev3 is not None
        assert dev1.online and dev1.reported is not None and dev1.reported["phase"] == "downloading"
        assert dev2.online
        assert not dev3.online and dev3.last_seen is None
    assert stats["malformed"]["presence"] == 2
    assert stats["malformed"]["chunk/req"] == 1
    assert stats["events"]["handler_error"] == 1
    assert stats["events"]["unknown_device"] == 1


def _provision(api: Any) -> None:
    for device_id in ("dev1", "dev2", "dev3"):
        api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": 1})


def test_a_batch_applies_the_good_messages_in_order_and_undoes_a_failing_one(api, monkeypatch):
    _provision(api)
    _failing_presence(monkeypatch)
    changes: list[int] = []
    msgs = DeviceMessages(api.ctx.db, default_chunk_size=1024, on_change=lambda: changes.append(1))
    sent: list[Outgoing] = []
    assert msgs.handle_batch(_batch(), sent.append) == len(_batch())
    stats = msgs.stats.snapshot()
    _check(api, stats)
    assert [out.topic for out in sent] == ["tf/dev1/chunk"]
    assert changes == [1]  # the after-commit effect runs once for the whole batch
    # dev3's failure undid the fast run; the careful run counted each message once.
    assert stats["events"]["careful_batches"] == 1
    assert stats["received"] == {"presence": 6, "reported": 2, "chunk/req": 1}


def test_the_gateway_worker_handles_what_is_queued_as_one_batch(api, monkeypatch, tmp_path):
    from tinyfleet.server.config import Settings
    from tinyfleet.server.mqtt_gateway import MqttGateway

    _provision(api)
    _failing_presence(monkeypatch)
    # Never connected (nothing listens there): the worker alone is exercised; QoS 0, so nothing to ack.
    settings = Settings(
        database_url=api.ctx.settings.database_url,
        data_dir=tmp_path / "gw",
        mqtt_url="mqtt://127.0.0.1:9",
    )
    msgs = DeviceMessages(api.ctx.db, default_chunk_size=1024)
    gateway = MqttGateway(settings, api.ctx.db, msgs)
    for mid, (topic, payload) in enumerate(_batch(), start=1):
        assert gateway._enqueue((topic, payload, 0, mid, 0))
    worker = threading.Thread(target=gateway._work, daemon=True)
    worker.start()
    try:
        assert gateway.wait_idle(30)
    finally:
        gateway._stop.set()
        gateway._queue.put(None)
        worker.join(10)
    stats = msgs.stats.snapshot()
    _check(api, stats)
    assert stats["events"]["message_batches"] == 1
    assert gateway._handled == len(_batch())


def test_a_healthy_batch_costs_a_few_statements_whatever_its_size(fleet):
    """Six devices' installs (downloading, verifying, trial, reported state, confirmed: 30 messages) in
    one batch: the rows are locked and loaded a few at a time, the messages run without a savepoint each,
    the finished downloads' bytes are read at once; the outcome is the same as message by message."""
    devices = 6
    for i in range(devices):
        fleet.add_device(f"dev-{i}")
    r = fleet.create(max_concurrent=devices)
    fleet.ctx.rollout_driver.tick(fleet.now)
    queued: list[tuple[str, bytes]] = []

    def send(topic: str, payload: bytes) -> list[Outgoing]:
        if topic.endswith("/chunk/req"):  # answered at once: the device waits for its chunk
            return fleet.messages.handle(topic, payload)
        queued.append((topic, payload))
        return []

    for dev in fleet.devices.values():
        dev.send = send
        dev.follow(fleet.desired(dev.device_id))
    assert len(queued) == 5 * devices
    before = fleet.messages.stats.snapshot()["received"]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(fleet.ctx.db, "before_cursor_execute", seen)
    try:
        fleet.messages.handle_batch(queued, lambda _out: None)
    finally:
        event.remove(fleet.ctx.db, "before_cursor_execute", seen)
    # Message by message it was two or more statements each (a savepoint, the row, its update).
    assert len(statements) <= 12, "\n".join(s.replace("\n", " ")[:150] for s in statements)
    assert not [s for s in statements if "SAVEPOINT" in s.upper()]
    stats = fleet.messages.stats.snapshot()
    assert "careful_batches" not in stats["events"]
    received = {kind: n - before.get(kind, 0) for kind, n in stats["received"].items()}
    assert received == {"status": 4 * devices, "reported": devices, "presence": 0, "chunk/req": 0}
    actions = fleet.actions(r["id"])
    assert [a["state"] for a in actions] == ["confirmed"] * devices
    assert all(a["bytes_sent"] == a["sent_size"] > 0 for a in actions), actions  # from the served bytes
    fleet.ctx.rollout_driver.tick(fleet.now)
    assert fleet.rollout(r["id"])["state"] == "completed"
    with Session(fleet.ctx.db) as session:
        for dev in fleet.devices.values():
            row = session.get(Device, dev.device_id)
            assert row is not None and row.active_model_sha256 == fleet.sha(fleet.v2)
