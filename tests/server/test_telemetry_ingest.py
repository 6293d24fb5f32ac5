"""The batching telemetry writer (services/telemetry_ingest.py) on real SQLite and PostgreSQL: a batch
stores exactly what one-by-one ingest stores (rows, duplicates, rollups), a bad message is refused alone,
a full queue blocks its producer without dropping, stopping flushes; and through a real Mosquitto, with
a queue smaller than the traffic, every report is stored once and acknowledged."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from sqlmodel import col, select

from tests.support.gateway_setup import wait_for
from tinyfleet.server.models import TelemetryReport, TelemetryRollup
from tinyfleet.server.services.messages import GatewayStats
from tinyfleet.server.services.telemetry_ingest import IngestItem, TelemetryIngest
from tinyfleet.server.stack import run_stack

SHA_A = "a" * 64
SHA_B = "b" * 64
T0 = (time.time() // 60) * 60 - 180  # three minutes ago, on a minute boundary


def report(seq: int, sha: str = SHA_A, **over: Any) -> dict[str, Any]:
    r = {
        "ts": T0 + 25 * seq,  # spread over several minutes: several rollups
        "model_sha256": sha,
        "inference_count": 10 + seq,
        "latency_us_mean": 900.0 + seq,
        "latency_estimated": seq % 2 == 0,
        "class_histogram": [seq, 3],
        "confidence_mean": 0.5 + seq / 100,
        "errors": seq % 3,
        "arena_bytes": 2048,
        "boot": 1,
        "seq": seq,
    }
    r.update(over)
    return r


def payload(*reports: dict[str, Any]) -> bytes:
    return json.dumps({"reports": list(reports)}).encode()


def add_devices(api: Any, sha: str, ids: list[str]) -> None:
    for device_id in ids:
        api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": 1})
        reported = {
            "runtime_version": 0x100,
            "hardware_class": 1,
            "phase": "idle",
            "active_slot": 0,
            "slots": [{"valid": True, "model_sha256": sha, "sequence": 1}],
        }
        api.ctx.messages.handle(f"tf/{device_id}/reported", json.dumps(reported).encode())


def traffic(device_id: str, sha: str) -> list[list[IngestItem]]:
    """Two deliveries' worth of messages: the second redelivers some of the first (QoS 1 after a
    reconnect), and one message carries the same report twice."""
    first = [IngestItem(device_id, payload(report(s, sha))) for s in range(6)]
    first.append(IngestItem(device_id, payload(report(6, sha), report(6, sha), report(7, sha))))
    again = [IngestItem(device_id, payload(report(s, sha))) for s in (0, 3, 7)]
    return [first, [*again, IngestItem(device_id, payload(report(8, sha)))]]


def stored_seqs(api: Any, sha: str) -> list[tuple[str, int | None]]:
    with api.ctx.session() as s:
        stmt = select(TelemetryReport).where(TelemetryReport.model_sha256 == sha)
        return sorted((r.device_id, r.seq) for r in s.exec(stmt))


def rollup_rows(api: Any, sha: str) -> list[tuple[Any, ...]]:
    with api.ctx.session() as s:
        stmt = select(TelemetryRollup).where(TelemetryRollup.model_sha256 == sha)
        rows = list(s.exec(stmt.order_by(col(TelemetryRollup.minute))))
    return [
        (
            r.minute,
            r.reports,
            r.inference_count,
            r.errors,
            round(r.latency_us_sum, 6),
            round(r.confidence_sum, 6),
            r.latency_estimated,
            r.class_histogram,
        )
        for r in rows
    ]


def test_a_batch_stores_what_one_by_one_ingest_stores(api):
    """Devices a-* on model A get their messages in batches, devices b-* on model B the same messages
    one at a time: the same rows, duplicate counts and rollups (model B's are compared with A's)."""
    add_devices(api, SHA_A, ["a-0", "a-1", "a-2"])
    add_devices(api, SHA_B, ["b-0", "b-1", "b-2"])
    batched, single = TelemetryIngest(api.ctx.db, GatewayStats()), TelemetryIngest(api.ctx.db, GatewayStats())
    acked: list[str] = []
    for delivery in range(2):
        batch = [m for i in range(3) for m in traffic(f"a-{i}", SHA_A)[delivery]]
        batch = [IngestItem(m.device_id, m.payload, lambda: acked.append("a")) for m in batch]
        assert batched.write(batch)
        for i in range(3):
            for m in traffic(f"b-{i}", SHA_B)[delivery]:
                assert single.write([m])
    expected = [(f"a-{i}", s) for i in range(3) for s in range(9)]
    assert stored_seqs(api, SHA_A) == expected
    assert [(d.replace("b-", "a-"), s) for d, s in stored_seqs(api, SHA_B)] == expected
    for ingest in (batched, single):
        events = ingest.stats.snapshot()["events"]
        assert events["telemetry_rows"] == 27
        assert events["telemetry_duplicates"] == 3 * 4  # 6 repeated in one message, 0, 3 and 7 again
    assert batched.stats.events["telemetry_batches"] == 2
    assert len(acked) == 3 * (7 + 4)  # every message acknowledged once its batch was stored
    a, b = rollup_rows(api, SHA_A), rollup_rows(api, SHA_B)
    assert len(a) >= 3 and a == b
    assert sum(r[1] for r in a) == 27


def test_a_bad_message_is_refused_alone(api):
    add_devices(api, SHA_A, ["a-0", "a-1"])
    ingest = TelemetryIngest(api.ctx.db, GatewayStats())
    done: list[int] = []
    messages = [
        payload(report(0)),
        b"not json",
        payload(report(1, confidence_mean="high")),  # malformed field: the whole message
        payload(report(2, sha=SHA_B)),  # not the model the device runs
        payload(report(3, confidence_mean=1.5)),  # implausible
    ]
    batch = [IngestItem("a-0", m, lambda i=i: done.append(i)) for i, m in enumerate(messages)]
    batch.append(IngestItem("nobody", payload(report(0)), lambda: done.append(5)))
    batch.append(IngestItem("a-1", payload(report(4)), lambda: done.append(6)))
    assert ingest.write(batch)
    assert stored_seqs(api, SHA_A) == [("a-0", 0), ("a-1", 4)]
    snap = ingest.stats.snapshot()
    assert snap["malformed"] == {"telemetry": 2}
    assert snap["rejected"] == {"wrong_model": 1, "out_of_range": 1}
    assert snap["events"]["unknown_device"] == 1
    assert sorted(done) == list(range(7))  # refused for good is acknowledged too: redelivery cannot help


def test_a_full_queue_blocks_the_producer_and_drops_nothing(api):
    add_devices(api, SHA_A, ["a-0"])
    ingest = TelemetryIngest(api.ctx.db, GatewayStats(), queue_max=2, batch_max=2)
    for s in range(2):
        assert ingest.submit("a-0", payload(report(s)))
    results: list[bool] = []
    producer = threading.Thread(target=lambda: results.append(ingest.submit("a-0", payload(report(2)))))
    producer.start()
    wait_for(lambda: ingest.stats.events["telemetry_backpressure"] == 1, what="the producer blocked")
    assert producer.is_alive() and results == [] and ingest.depth == 2
    ingest.start()  # the writer drains the queue: the blocked producer gets its message in
    producer.join(10)
    assert results == [True]
    assert ingest.wait_idle()
    ingest.stop()
    assert stored_seqs(api, SHA_A) == [("a-0", 0), ("a-0", 1), ("a-0", 2)]
    assert ingest.stats.received["telemetry"] == 3


def test_stopping_stores_what_is_queued(api):
    add_devices(api, SHA_A, ["a-0"])
    # A batch would wait a minute to fill up: stopping must not wait for it, nor lose it.
    ingest = TelemetryIngest(api.ctx.db, GatewayStats(), batch_ms=60_000)
    ingest.start()
    acked: list[int] = []
    for s in range(5):
        ingest.submit("a-0", payload(report(s)), lambda s=s: acked.append(s))
    ingest.stop()
    assert not ingest.running
    assert stored_seqs(api, SHA_A) == [("a-0", s) for s in range(5)]
    assert sorted(acked) == list(range(5))
    assert not ingest.submit("a-0", payload(report(5)))  # after stop: not taken, so never acknowledged


def test_through_mosquitto_every_report_is_stored_once_and_acknowledged(mosquitto, tmp_path):
    """A queue of 8 (so the broker's in-flight window is 8 too) under 3 devices x 60 messages published
    at once, plus a redelivered copy of each device's first 10: all 180 reports stored, once."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    opts = {"telemetry_queue_max": 8, "telemetry_batch_max": 4, "telemetry_batch_ms": 5.0}
    with run_stack(mosquitto.url, data_dir=tmp_path / "server", **opts) as st:
        wait_for(lambda: st.ctx.gateway is not None and st.ctx.gateway.connected.is_set(), what="gateway")
        with st.client() as c:
            for i in range(3):
                c.post("/api/devices", json={"id": f"d-{i}", "hardware_class": 1}).raise_for_status()
        slot = {"valid": True, "model_sha256": SHA_A, "sequence": 1}
        doc = {
            "runtime_version": 256,
            "hardware_class": 1,
            "phase": "idle",
            "active_slot": 0,
            "slots": [slot],
        }
        for i in range(3):
            st.ctx.messages.handle(f"tf/d-{i}/reported", json.dumps(doc).encode())
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect(mosquitto.host, mosquitto.port)
        client.loop_start()
        try:
            infos = [
                client.publish(
                    f"tf/d-{i}/telemetry", payload(report(s % 60, ts=time.time(), confidence_mean=0.5)), qos=1
                )
                for s in range(70)
                for i in range(3)
            ]
            for info in infos:
                info.wait_for_publish(30)
            stats = st.ctx.stats
            wait_for(lambda: stats.events["telemetry_rows"] == 180, timeout=60, what="all reports stored")
            # The last duplicates may still be in a batch being checked when the rows are all stored.
            wait_for(lambda: stats.events["telemetry_duplicates"] >= 30, timeout=60, what="duplicates")
            assert st.ctx.gateway.wait_idle(30)
        finally:
            client.disconnect()
            client.loop_stop()
        with st.ctx.session() as s:
            rows = list(s.exec(select(TelemetryReport.device_id, TelemetryReport.seq)))
        assert sorted(rows) == sorted((f"d-{i}", s) for i in range(3) for s in range(60))
        assert stats.events["telemetry_duplicates"] == 30
        assert stats.received["telemetry"] == 210
        assert stats.events["acked"] >= 210
        assert stats.events["telemetry_batches"] >= 210 // 4


def test_reports_are_checked_against_the_reported_state_sent_before_them(mosquitto, tmp_path):
    """Telemetry and reported states take two threads in the server, yet a device that reports model A,
    switches to B (new reported state) and reports B at once, on one connection, has every report
    checked against the model it ran when it sent it: none refused as the wrong model."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    def reported(sha: str) -> bytes:
        slot = {"valid": True, "model_sha256": sha, "sequence": 1}
        doc = {"runtime_version": 256, "hardware_class": 1, "phase": "idle", "active_slot": 0}
        return json.dumps({**doc, "slots": [slot]}).encode()

    with run_stack(mosquitto.url, data_dir=tmp_path / "server") as st:
        wait_for(lambda: st.ctx.gateway is not None and st.ctx.gateway.connected.is_set(), what="gateway")
        with st.client() as c:
            c.post("/api/devices", json={"id": "d-0", "hardware_class": 1}).raise_for_status()
        st.ctx.messages.handle("tf/d-0/reported", reported(SHA_A))
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect(mosquitto.host, mosquitto.port)
        client.loop_start()
        try:
            now = time.time()
            sends = [("tf/d-0/telemetry", payload(report(s, SHA_A, ts=now))) for s in range(20)]
            sends += [("tf/d-0/reported", reported(SHA_B))]
            sends += [("tf/d-0/telemetry", payload(report(s, SHA_B, ts=now))) for s in range(20, 40)]
            for info in [client.publish(topic, body, qos=1) for topic, body in sends]:
                info.wait_for_publish(30)
            stats = st.ctx.stats
            wait_for(lambda: stats.events["telemetry_rows"] == 40, timeout=30, what="all reports stored")
        finally:
            client.disconnect()
            client.loop_stop()
        assert stats.snapshot()["rejected"] == {}
        with st.ctx.session() as s:
            rows = list(s.exec(select(TelemetryReport.seq, TelemetryReport.model_sha256)))
        assert sorted(rows) == [(s, SHA_A if s < 20 else SHA_B) for s in range(40)]


def test_settings_and_metrics(api):
    from tinyfleet.server.config import ConfigError, settings_from_env

    env = {"TINYFLEET_TELEMETRY_BATCH_MAX": "50", "TINYFLEET_TELEMETRY_BATCH_MS": "5"}
    settings = settings_from_env({**env, "TINYFLEET_TELEMETRY_QUEUE_MAX": "200"})
    assert (settings.telemetry_batch_max, settings.telemetry_batch_ms, settings.telemetry_queue_max) == (
        50,
        5.0,
        200,
    )
    for bad in ({"TINYFLEET_TELEMETRY_QUEUE_MAX": "0"}, {"TINYFLEET_TELEMETRY_QUEUE_MAX": "70000"}):
        with pytest.raises(ConfigError, match="TINYFLEET_TELEMETRY_QUEUE_MAX"):
            settings_from_env(bad)
    add_devices(api, SHA_A, ["a-0"])
    ingest = api.ctx.telemetry_ingest  # the app's own writer, not started here: nothing drains its queue
    for s in range(3):
        ingest.submit("a-0", payload(report(s)))
    ingest.write([IngestItem("a-0", payload(report(9)))])
    text = api.client.get("/metrics").text
    assert "tinyfleet_telemetry_queue_depth 3.0" in text
    assert "tinyfleet_telemetry_queue_capacity 5000.0" in text
    assert "tinyfleet_telemetry_batches_total 1.0" in text
    assert "tinyfleet_telemetry_reports_stored_total 1.0" in text
    assert "tinyfleet_telemetry_messages_received_total 3.0" in text
