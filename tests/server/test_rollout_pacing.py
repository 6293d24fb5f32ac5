"""Issue 12: a big rollout paces its downloads by the gateway's backlog, and a chunk request that waited
in the gateway's queue while its chunk was served is not answered twice."""

from __future__ import annotations

import time

from tests.server.test_rollouts import SQLITE_ONLY, fleet  # noqa: F401 (fixture)
from tinyfleet.server.services.chunk_order import ChunkRequestOrder
from tinyfleet.server.services.rollout_pacing import HIGH_BACKLOG, DownloadWindow


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
    fleet,  # noqa: F811 (fixture)
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
