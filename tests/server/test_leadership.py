"""Leader election on PostgreSQL (services/leadership.py): one leader among replicas of one schema, a
follower takes over once the leader's lock backend is gone, the fence fails for a leader that lost its
lock, and a follower's wake-up reaches the leader by NOTIFY. SQLite: always the leader."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from tinyfleet.server.db import make_engine
from tinyfleet.server.services.leadership import Leadership


class Replica:
    def __init__(self, url: str, name: str) -> None:
        self.gained = 0
        self.lost = 0
        self.woken = threading.Event()
        self.leadership = Leadership(
            url, name, on_gain=self._gain, on_lose=self._lose, on_wake=self.woken.set, interval=0.2
        )

    def _gain(self) -> None:
        self.gained += 1

    def _lose(self) -> None:
        self.lost += 1


def _wait(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def replicas(pg_url: str) -> Iterator[list[Replica]]:
    made = [Replica(pg_url, "a"), Replica(pg_url, "b")]
    yield made
    for r in made:
        r.leadership.stop()


@pytest.mark.postgres
def test_one_leader_then_takeover_when_its_backend_dies(replicas: list[Replica], pg_url: str) -> None:
    a, b = replicas
    a.leadership.start()
    b.leadership.start()
    assert a.leadership.is_leader and not b.leadership.is_leader
    assert (a.gained, b.gained) == (1, 0)
    engine = make_engine(pg_url)
    try:
        with Session(engine) as session:
            assert a.leadership.fence(session)
            assert not b.leadership.fence(session)
            # The leader's lock connection dies as if its process had been killed.
            pid = a.leadership._pid
            session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            assert _wait(lambda: b.leadership.is_leader), "the follower did not take over"
            assert _wait(lambda: a.lost == 1 and not a.leadership.is_leader)
            assert not a.leadership.fence(session)  # fenced off: writes nothing more as leader
            assert b.leadership.fence(session)
    finally:
        engine.dispose()
    # The old leader reconnects as a follower and stays one.
    time.sleep(1.0)
    assert b.leadership.is_leader and not a.leadership.is_leader


@pytest.mark.postgres
def test_follower_wakes_the_leader_through_notify(replicas: list[Replica]) -> None:
    a, b = replicas
    a.leadership.start()
    b.leadership.start()
    assert a.leadership.is_leader
    a.woken.clear()
    b.leadership.wake_leader()
    assert a.woken.wait(10), "the leader did not hear the follower's NOTIFY"


@pytest.mark.postgres
def test_stopping_the_leader_hands_over(replicas: list[Replica]) -> None:
    a, b = replicas
    a.leadership.start()
    b.leadership.start()
    a.leadership.stop()
    assert a.lost == 1
    assert _wait(lambda: b.leadership.is_leader)


def test_sqlite_is_always_the_leader(tmp_path: Path) -> None:
    r = Replica(f"sqlite:///{tmp_path / 'x.db'}", "solo")
    r.leadership.start()
    assert r.leadership.is_leader and r.gained == 1
    r.leadership.stop()
    assert r.lost == 1 and not r.leadership.is_leader
