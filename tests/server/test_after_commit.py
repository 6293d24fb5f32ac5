"""Side effects after commit: services register them with `db.after_commit`, `session_scope` runs them
only once the commit succeeded (never after a rollback), and an effect that fails is logged without
failing the request whose change is already committed. Also: the device list filters and pages in SQL."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from tests.support.rollout_fleet import SQLITE_ONLY
from tinyfleet.server.db import after_commit, make_engine, session_scope, upgrade_to_head
from tinyfleet.server.models import Device, HardwareClass


@pytest.fixture
def db(db_url):
    engine = make_engine(db_url)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


def _hw(class_id: int) -> HardwareClass:
    return HardwareClass(id=class_id, name=f"hw{class_id}", chunk_size=256, created_at=0.0)


# --- session_scope ----------------------------------------------------------------------------------


def test_effects_run_once_after_the_commit_in_order(db):
    seen: list[object] = []

    def sees_the_row() -> None:
        with Session(db) as other:  # another connection: only committed data is visible
            seen.append(other.get(HardwareClass, 7) is not None)

    with session_scope(db) as s:
        s.add(_hw(7))
        s.flush()
        after_commit(s, sees_the_row)
        after_commit(s, sees_the_row)  # registered twice, run once
        after_commit(s, lambda: seen.append("second"))
        assert seen == []
    assert seen == [True, "second"]


def test_no_effect_after_an_error_or_a_failed_commit(db):
    ran: list[int] = []
    with pytest.raises(RuntimeError), session_scope(db) as s:
        s.add(_hw(1))
        after_commit(s, lambda: ran.append(1))
        raise RuntimeError("the request failed")
    with session_scope(db) as s:
        s.add(_hw(2))
    with pytest.raises(IntegrityError), session_scope(db) as s:
        s.add(_hw(2))  # the duplicate key fails at commit, after the block
        after_commit(s, lambda: ran.append(2))
    assert ran == []
    with Session(db) as s:
        assert s.get(HardwareClass, 1) is None


def test_a_failing_effect_is_logged_and_the_others_still_run(db, caplog):
    ran: list[int] = []

    def broken() -> None:
        raise OSError("password file not writable")

    with caplog.at_level(logging.ERROR, logger="tinyfleet.server.db"), session_scope(db) as s:
        s.add(_hw(3))
        after_commit(s, broken)
        after_commit(s, lambda: ran.append(3))
    assert ran == [3] and "password file not writable" in caplog.text
    with Session(db) as s:
        assert s.get(HardwareClass, 3) is not None


# --- through the API --------------------------------------------------------------------------------


def _record(api, monkeypatch) -> list[tuple]:
    """Record the effects the context carries out, each with whether the device row was committed."""
    calls: list[tuple] = []

    def committed(device_id: str) -> bool:
        with Session(api.ctx.db) as other:
            return other.get(Device, device_id) is not None

    monkeypatch.setattr(api.ctx.rollout_driver, "wake", lambda: calls.append(("wake",)))
    monkeypatch.setattr(
        api.ctx, "add_password_entry", lambda user, _hash: calls.append(("passwd", user, committed(user)))
    )
    monkeypatch.setattr(api.ctx, "sync_password_file", lambda: calls.append(("sync",)))
    monkeypatch.setattr(api.ctx, "forget_device", lambda d: calls.append(("forget", d, committed(d))))
    return calls


def test_device_routes_run_their_effects_after_commit_only(api, monkeypatch):
    calls = _record(api, monkeypatch)
    api.ok("POST", "/api/devices", 201, json={"id": "dev-a1", "hardware_class": 1})
    assert calls == [("passwd", "dev-a1", True), ("wake",)]
    calls.clear()
    assert api.client.post("/api/devices", json={"id": "dev-a1", "hardware_class": 1}).status_code == 409
    assert api.client.patch("/api/devices/nope", json={"name": "x"}).status_code == 404
    assert api.client.post("/api/devices/nope/credentials").status_code == 404
    assert api.client.delete("/api/devices/nope").status_code == 404
    assert calls == []
    api.ok("PATCH", "/api/devices/dev-a1", json={"tags": ["eu"]})
    api.ok("POST", "/api/devices/dev-a1/credentials")
    assert calls == [("wake",), ("sync",)]
    calls.clear()
    api.ok("DELETE", "/api/devices/dev-a1", 204)
    assert calls == [("forget", "dev-a1", False), ("sync",)]


def test_a_failing_effect_does_not_fail_the_request(api, monkeypatch, caplog):
    def broker_down() -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(api.ctx.rollout_driver, "wake", broker_down)
    with caplog.at_level(logging.ERROR, logger="tinyfleet.server.db"):
        out = api.ok("POST", "/api/devices", 201, json={"id": "dev-b1", "hardware_class": 1})
    assert out["device"]["id"] == "dev-b1" and out["mqtt"]["password"]
    assert api.ok("GET", "/api/devices/dev-b1")["id"] == "dev-b1"
    assert "broker down" in caplog.text


@SQLITE_ONLY
def test_abort_publishes_desired_states_after_commit(fleet, monkeypatch):
    for i in range(2):
        fleet.add_device(f"dev-{i}")
    r = fleet.create(max_concurrent=1)
    fleet.ctx.rollout_driver.tick(fleet.t0)
    [notified] = fleet.actions(r["id"], state="notified")
    published: list[tuple[str, str, str | None]] = []

    def publish(device_id: str, desired: dict) -> None:
        with Session(fleet.ctx.db) as other:  # the desired state is committed before it is sent
            stored = other.get(Device, device_id).desired
        published.append((device_id, desired["operation"], stored["operation"]))

    monkeypatch.setattr(fleet.ctx.rollout_driver.publisher, "publish_desired", publish)
    fleet.api.ok("POST", f"/api/rollouts/{r['id']}/abort")
    assert published == [(notified["device_id"], "none", "none")]
    published.clear()
    assert fleet.api.client.post(f"/api/rollouts/{r['id']}/abort").status_code == 409
    assert published == []


# --- device list: filters and pages in SQL ----------------------------------------------------------


def test_device_list_filters_and_pages_in_the_database(api):
    for i, tags in enumerate([["eu"], ["eu-west"], ["a_b", "eu"], ["axb"], ["lab/1"], []]):
        api.ok(
            "POST", "/api/devices", 201, json={"id": f"dev-{i}", "hardware_class": 1 + i % 2, "tags": tags}
        )

    def ids(**params) -> list[str]:
        return [d["id"] for d in api.ok("GET", "/api/devices", params=params)]

    assert ids(tag="eu") == ["dev-0", "dev-2"]  # a whole tag, not a prefix
    assert ids(tag="a_b") == ["dev-2"] and ids(tag="a%") == []  # LIKE wildcards are literal
    assert ids(tag="lab/1") == ["dev-4"] and ids(tag="lab") == []
    assert ids(tag="eu", limit=1) == ["dev-0"] and ids(tag="eu", limit=1, offset=1) == ["dev-2"]
    assert ids(hardware_class=2, limit=2, offset=1) == ["dev-3", "dev-5"]
    assert ids(offset=4) == ["dev-4", "dev-5"] and ids(offset=6) == []
    assert api.client.get("/api/devices", params={"offset": -1}).status_code == 422
