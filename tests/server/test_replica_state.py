"""State several replicas share through the database (issue 16): telemetry rollups written by two
replicas at once add up, chunk bytes served by one replica are seen by another, and reported states
handled out of order keep the newer one, a device's hardware class cached by one replica follows the
device's id provisioned again by another. Also the replica settings."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlmodel import Session, select

from tests.support.inprocess_api import Api
from tinyfleet.server.config import ConfigError, settings_from_env
from tinyfleet.server.db import make_engine, session_scope, upgrade_to_head
from tinyfleet.server.models import TelemetryReport, TelemetryRollup
from tinyfleet.server.services import rollups
from tinyfleet.server.services.messages import DeviceMessages, decode_chunk
from tinyfleet.server.services.served import ServedBytes

SHA = "ab" * 32


def _report(ts: float) -> TelemetryReport:
    return TelemetryReport(
        device_id="d-1",
        model_sha256=SHA,
        ts=ts,
        received_at=ts,
        inference_count=10,
        errors=1,
        latency_us_mean=100.0,
        confidence_mean=0.5,
        class_histogram=[5, 5],
        latency_estimated=False,
        arena_bytes=0,
    )


def test_rollups_written_at_once_by_two_writers_add_up(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade_to_head(engine)
    batches, per_batch = 20, 5
    start = threading.Barrier(2)

    def writer() -> None:
        start.wait()
        for b in range(batches):
            with session_scope(engine) as session:
                rollups.add(session, [_report(120.0 + b % 3 + i) for i in range(per_batch)])

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    with Session(engine) as session:
        rows = list(session.exec(select(TelemetryRollup)))
    engine.dispose()
    assert sum(r.reports for r in rows) == 2 * batches * per_batch
    assert sum(r.inference_count for r in rows) == 2 * batches * per_batch * 10
    assert sum(sum(r.class_histogram) for r in rows) == 2 * batches * per_batch * 10


def test_served_bytes_are_shared_through_the_database(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    upgrade_to_head(engine)
    one, other = ServedBytes(), ServedBytes()  # two replicas' counters
    one.add("d-1", "p-1", 100)
    with session_scope(engine) as session:
        assert one.get(session, "d-1", "p-1") == 100  # counted, not yet stored
        one.flush(session)
    other.add("d-1", "p-1", 50)
    with session_scope(engine) as session:
        other.flush(session)
    with session_scope(engine) as session:
        assert one.get(session, "d-1", "p-1") == 150
        assert other.get(session, "d-1", "p-1") == 150
    # A flush whose transaction rolls back keeps the bytes for the next one.
    one.add("d-1", "p-1", 7)
    try:
        with session_scope(engine) as session:
            one.flush(session)
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    with session_scope(engine) as session:
        one.flush(session)
    with session_scope(engine) as session:
        assert other.get(session, "d-1", "p-1") == 157
        other.reset(session, "d-1", "p-1")
    with session_scope(engine) as session:
        assert one.get(session, "d-1", "p-1") == 0
    engine.dispose()


def _reported(phase: str, seq: int, boot: int = 7) -> bytes:
    doc = {
        "runtime_version": 256,
        "hardware_class": 1,
        "phase": phase,
        "active_slot": None,
        "security_floor": 0,
        "download_offset": 0,
        "last_error": 0,
        "slots": [
            {"valid": False, "model_name": "", "version": "", "model_sha256": "", "sequence": 0},
            {"valid": False, "model_name": "", "version": "", "model_sha256": "", "sequence": 0},
        ],
        "boot": boot,
        "seq": seq,
    }
    return json.dumps(doc).encode()


def test_an_older_reported_state_handled_late_is_dropped(api: Api) -> None:
    """Two replicas may handle one device's reported states in either order: the newer one stays."""
    api.ok("POST", "/api/devices", 201, json={"id": "dev-r", "hardware_class": 1})
    messages = api.ctx.messages
    messages.handle("tf/dev-r/reported", _reported("downloading", 5))
    messages.handle("tf/dev-r/reported", _reported("idle", 4))  # sent before, handled after
    assert api.ok("GET", "/api/devices/dev-r")["reported"]["phase"] == "downloading"
    assert messages.stats.snapshot()["events"]["stale_reported"] == 1
    messages.handle("tf/dev-r/reported", _reported("idle", 6))
    assert api.ok("GET", "/api/devices/dev-r")["reported"]["phase"] == "idle"
    messages.handle("tf/dev-r/reported", _reported("downloading", 0, boot=8))  # a new boot starts over
    assert api.ok("GET", "/api/devices/dev-r")["reported"]["phase"] == "downloading"


def test_replica_settings() -> None:
    one = settings_from_env({})
    assert (one.replica_name, one.mqtt_client_id, one.mqtt_shared_group) == (
        "tinyfleet-server",
        "tinyfleet-server",
        "tinyfleet",
    )
    two = settings_from_env({"TINYFLEET_REPLICA_NAME": "tinyfleet-b"})
    assert two.mqtt_client_id == "tinyfleet-b"  # the broker keeps this replica's session under its name
    own = settings_from_env({"TINYFLEET_REPLICA_NAME": "tinyfleet-b", "TINYFLEET_MQTT_CLIENT_ID": "gw-b"})
    assert own.mqtt_client_id == "gw-b"
    with pytest.raises(ConfigError, match="TINYFLEET_REPLICA_NAME"):
        settings_from_env({"TINYFLEET_REPLICA_NAME": "a/b"})
    with pytest.raises(ConfigError, match="TINYFLEET_LEADER_CHECK_SECONDS"):
        settings_from_env({"TINYFLEET_LEADER_CHECK_SECONDS": "0"})


def test_a_device_id_provisioned_again_in_another_class_is_served_by_every_replica(
    api: Api, shared_models: Path
) -> None:
    """Each replica caches a device's hardware class (chunks need no database) and only the replica that
    deletes a device forgets it: after its id is provisioned again in another class, through another
    replica, this one still serves that class's packages (and no longer the old class's)."""
    model = api.ok("POST", "/api/models", 201, json={"name": "hello"})
    tflite = (shared_models / "pairs" / "hello_world_int8.0.tflite").read_bytes()
    package = {}
    for hw in (1, 2):
        params = {"version": "1.0.0", "hardware_class": hw}
        version = api.ok("POST", f"/api/models/{model['id']}/versions", 201, params=params, content=tflite)
        (package[hw],) = [p["id"] for p in version["packages"] if p["hardware_class"] == hw]
    api.ok("POST", "/api/devices", 201, json={"id": "dev-c", "hardware_class": 1})
    other = DeviceMessages(api.ctx.db, default_chunk_size=1024)  # another replica's gateway

    def chunk(package_id: str, offset: int) -> bytes:
        req = {"package_id": package_id, "offset": offset, "length": 64}
        (reply,) = other.handle("tf/dev-c/chunk/req", json.dumps(req).encode())
        return decode_chunk(reply.payload)[3]

    assert len(chunk(package[1], 0)) == 64 and chunk(package[2], 0) == b""
    api.ok("DELETE", "/api/devices/dev-c", 204)  # through this replica: `other` is not told
    api.ok("POST", "/api/devices", 201, json={"id": "dev-c", "hardware_class": 2})
    assert len(chunk(package[2], 64)) == 64
    assert chunk(package[1], 128) == b""
