"""Issue 12: a big rollout paces its downloads by the gateway's backlog, and a chunk request that waited
in the gateway's queue while its chunk was served is not answered twice."""

from __future__ import annotations

import time
from typing import Any

from sqlmodel import Session, col, select

from tests.support.rollout_fleet import SQLITE_ONLY
from tinyfleet.server.models import DeviceAction, Rollout
from tinyfleet.server.services.chunk_order import ChunkRequestOrder
from tinyfleet.server.services.rollout_pacing import HIGH_BACKLOG, DownloadWindow
from tinyfleet.server.services.rollout_scan import scan


def test_a_retry_queued_before_its_chunk_left_is_skipped_and_a_later_one_answered() -> None:
    order = ChunkRequestOrder()
    req = b'{"package_id":"p","offset":0,"length":292}'
    order.arrived("dev", req, time.monotonic())  # the request
    order.arrived("dev", req, time.monotonic())  # the device's retry, while the first still waits
    first = order.take("dev", req)
    assert not order.answered_already("dev", "p", 0, first)
    order.served("dev", "p", 0)
    retry = order.take("dev", req)
    assert order.answered_already("dev", "p", 0, retry), "the retry was queued before the chunk left"
    # Asked again after the chunk left (it was lost on the way): answered.
    order.arrived("dev", req, time.monotonic())
    assert not order.answered_already("dev", "p", 0, order.take("dev", req))
    # Another offset, another device, or an unknown arrival: answered.
    assert not order.answered_already("dev", "p", 1024, retry)
    assert not order.answered_already("other", "p", 0, retry)
    assert not order.answered_already("dev", "p", 0, order.take("dev", req))


def test_a_request_the_gateway_dropped_is_not_remembered() -> None:
    order = ChunkRequestOrder()
    req = b"{}"
    order.arrived("dev", req, 1.0)
    order.withdraw("dev", req)
    assert order.take("dev", req) is None


@SQLITE_ONLY
def test_downloads_are_paced_by_the_gateway_backlog(
    fleet,
) -> None:
    for i in range(8):
        fleet.add_device(f"dev-{i}")
    driver = fleet.ctx.rollout_driver
    backlog = [0]
    driver.publisher.backlog = lambda: backlog[0]  # the MQTT gateway's queue length
    driver.window = DownloadWindow(start=3, minimum=1)
    r = fleet.create(max_concurrent=8)

    def notified() -> int:
        return sum(a["state"] != "queued" for a in fleet.actions(r["id"]))

    driver.tick(fleet.t0)
    assert notified() == 3, "the window, not max_concurrent, bounds the first notifications"
    driver.tick(fleet.t0)
    assert notified() == 4, "a short backlog with the window in use grows it"
    backlog[0] = HIGH_BACKLOG + 1
    driver.tick(fleet.t0)
    assert notified() == 4 and driver.window.size == 3, "a long backlog shrinks it"
    backlog[0] = 0
    fleet.step(fleet.t0 + 1, rounds=8)
    rollout = fleet.rollout(r["id"])
    assert rollout["state"] == "completed"
    assert rollout["deploy"]["by_state"] == {"confirmed": 8}


def _queued_in_dispatch_order(db: Any, rollout_id: int, online: set[str]) -> list[str]:
    """The devices of the rollout's queued actions in dispatch order (wave, device id), online ones."""
    stmt = select(DeviceAction).where(DeviceAction.rollout_id == rollout_id)
    with Session(db) as session:
        actions = session.exec(stmt.order_by(col(DeviceAction.wave), col(DeviceAction.device_id))).all()
        return [a.device_id for a in actions if a.state == "queued" and a.device_id in online]


@SQLITE_ONLY
def test_the_scan_loads_as_rows_only_the_queued_actions_that_may_start(fleet) -> None:
    """A tick loads as rows the first queued actions of online devices, as many as may start (the
    window, or max_concurrent, minus those in flight); the other actions are light copies (issue 12)."""
    for i in range(12):
        fleet.add_device(f"dev-{i:02d}")
    r = fleet.create(max_concurrent=8)
    # The first device in dispatch order goes offline after the rollout started: it is not startable.
    first = _queued_in_dispatch_order(fleet.ctx.db, r["id"], set(fleet.devices))[0]
    fleet.devices[first].publish("presence", {"online": False})
    online = set(fleet.devices) - {first}

    def rows(window: int | None) -> list[str]:
        """The devices whose actions the scan loaded as rows; asserts it loaded no other action."""
        with Session(fleet.ctx.db) as session:
            rollout = session.get(Rollout, r["id"])
            assert rollout is not None
            got = scan(session, rollout, fleet.now, 0.0, window)
            assert got is not None and len(got) == 12, "every action, as a row or a copy"
            loaded = [a for a in got if isinstance(a, DeviceAction)]
            in_session = [o for o in session.identity_map.values() if isinstance(o, DeviceAction)]
            assert len(in_session) == len(loaded)
            return [a.device_id for a in loaded]

    queued = _queued_in_dispatch_order(fleet.ctx.db, r["id"], online)
    assert len(queued) == 11
    assert rows(3) == queued[:3], "the window lets three start: the first three online ones"
    assert rows(None) == queued[:8], "without a window max_concurrent bounds it, not the 11 queued"
    # Two in flight (recent, so not due to time out: copies) leave room for one under a window of three.
    with Session(fleet.ctx.db) as session:
        for a in session.exec(select(DeviceAction).where(col(DeviceAction.device_id).in_(queued[:2]))):
            a.state, a.notified_at, a.updated_at = "notified", fleet.now, fleet.now
            session.add(a)
        session.commit()
    assert rows(3) == queued[2:3]
