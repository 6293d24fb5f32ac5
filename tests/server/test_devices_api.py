"""Devices: provisioning (credentials, trust store), labels, filters, invalid requests; telemetry API."""

from __future__ import annotations

import json

import pytest

from tinyfleet.server.services.credentials import check_password


def test_provision_returns_credentials_and_trust_store(api):
    out = api.ok(
        "POST", "/api/devices", 201, json={"hardware_class": 1, "tags": ["eu", "eu", "lab"], "group": "g1"}
    )
    dev = out["device"]
    assert dev["id"].startswith("dev-") and dev["tags"] == ["eu", "lab"] and dev["group"] == "g1"
    assert dev["online"] is False and "mqtt_password_hash" not in dev
    assert out["mqtt"]["username"] == dev["id"] and len(out["mqtt"]["password"]) >= 24
    assert out["mqtt"]["topic_prefix"] == f"tf/{dev['id']}/"
    assert out["trust_store"] == api.ok("GET", "/api/trust-store") and len(out["trust_store"]) == 1
    assert out["chunk_size"] == 1024
    with api.ctx.session() as s:
        from tinyfleet.server.models import Device

        stored = s.get(Device, dev["id"])
        assert check_password(out["mqtt"]["password"], stored.mqtt_password_hash)
        assert not check_password("wrong", stored.mqtt_password_hash)
    rotated = api.ok("POST", f"/api/devices/{dev['id']}/credentials")
    assert rotated["mqtt"]["password"] != out["mqtt"]["password"]


def test_provision_with_chosen_id_and_chunk_size_of_class(api):
    api.ok("PUT", "/api/hardware-classes/2", json={"name": "m0", "chunk_size": 256})
    out = api.ok("POST", "/api/devices", 201, json={"id": "sensor-01", "hardware_class": 2})
    assert out["device"]["id"] == "sensor-01" and out["chunk_size"] == 256
    resp = api.client.post("/api/devices", json={"id": "sensor-01", "hardware_class": 2})
    assert resp.status_code == 409 and "already exists" in resp.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "body.hardware_class: Field required"),
        ({"hardware_class": -1}, "body.hardware_class"),
        ({"hardware_class": 2**32}, "body.hardware_class"),
        ({"hardware_class": 1, "id": "a/b"}, "body.id"),
        ({"hardware_class": 1, "id": "x"}, "body.id"),
        ({"hardware_class": 1, "tags": ["ok", "bad tag"]}, "bad tag"),
        ({"hardware_class": 1, "tags": "eu"}, "body.tags"),
        ({"hardware_class": 1, "group": ""}, "body.group"),
        ({"hardware_class": "one"}, "body.hardware_class"),
    ],
)
def test_invalid_provision_is_422(api, body, fragment):
    resp = api.client.post("/api/devices", json=body)
    assert resp.status_code == 422, resp.text
    assert fragment in resp.json()["detail"]


def test_malformed_json_body_is_422(api):
    resp = api.client.post("/api/devices", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 422 and "JSON" in resp.json()["detail"]


def test_update_filter_delete_devices(api):
    a = api.ok("POST", "/api/devices", 201, json={"id": "aaa", "hardware_class": 1, "tags": ["eu"]})["device"]
    api.ok("POST", "/api/devices", 201, json={"id": "bbb", "hardware_class": 2, "group": "lab"})
    assert [d["id"] for d in api.ok("GET", "/api/devices")] == ["aaa", "bbb"]
    assert [d["id"] for d in api.ok("GET", "/api/devices", params={"tag": "eu"})] == ["aaa"]
    assert [d["id"] for d in api.ok("GET", "/api/devices", params={"group": "lab"})] == ["bbb"]
    assert [d["id"] for d in api.ok("GET", "/api/devices", params={"hardware_class": 2})] == ["bbb"]
    assert api.ok("GET", "/api/devices", params={"online": True}) == []
    assert [d["id"] for d in api.ok("GET", "/api/devices", params={"limit": 1, "offset": 1})] == ["bbb"]
    assert api.client.get("/api/devices", params={"limit": 0}).status_code == 422
    upd = api.ok("PATCH", f"/api/devices/{a['id']}", json={"tags": ["us"], "group": "lab", "name": "first"})
    assert upd["tags"] == ["us"] and upd["group"] == "lab" and upd["name"] == "first"
    assert api.ok("PATCH", "/api/devices/aaa", json={"clear_group": True})["group"] is None
    assert api.client.patch("/api/devices/aaa", json={"tags": ["a b"]}).status_code == 422
    assert api.client.patch("/api/devices/aaa", json={"hardware_class": 3}).status_code == 422
    assert api.client.patch("/api/devices/zzz", json={"name": "x"}).status_code == 404
    assert api.ok("GET", "/api/devices/aaa/actions") == []
    api.ok("DELETE", "/api/devices/aaa", 204)
    for method, url in (
        ("GET", "/api/devices/aaa"),
        ("DELETE", "/api/devices/aaa"),
        ("POST", "/api/devices/aaa/credentials"),
        ("GET", "/api/devices/aaa/actions"),
    ):
        resp = api.client.request(method, url)
        assert resp.status_code == 404 and "device 'aaa' not found" in resp.json()["detail"]


def _telemetry(sha: str, ts: float, count: int, latency: float, hist: list[int]) -> dict:
    return {
        "ts": ts,
        "model_sha256": sha,
        "inference_count": count,
        "latency_us_mean": latency,
        "latency_estimated": False,
        "class_histogram": hist,
        "confidence_mean": 0.5,
        "errors": 1,
        "arena_bytes": 2048,
    }


def test_telemetry_query_and_summary(api):
    from tinyfleet.server.services.messages import DeviceMessages
    from tinyfleet.server.services.telemetry_ingest import TelemetryIngest

    api.ok("POST", "/api/devices", 201, json={"id": "dev1", "hardware_class": 1})
    api.ok("POST", "/api/devices", 201, json={"id": "dev2", "hardware_class": 1})
    msgs = DeviceMessages(api.ctx.db, default_chunk_size=1024)
    sha = "ab" * 32
    # A report is accepted only for the model the device reports active (issue 11 item 8).
    for device_id, active in (("dev1", sha), ("dev2", "cd" * 32)):
        reported = {
            "runtime_version": 0x100,
            "hardware_class": 1,
            "phase": "idle",
            "active_slot": 0,
            "slots": [{"valid": True, "model_sha256": active, "sequence": 1}],
        }
        msgs.handle(f"tf/{device_id}/reported", json.dumps(reported).encode())
    ingest = TelemetryIngest(api.ctx.db, msgs.stats)  # its writer thread not started yet
    ingest.submit(
        "dev1",
        json.dumps(
            {
                "reports": [
                    _telemetry(sha, 100.0, 10, 100.0, [1, 2]),
                    _telemetry(sha, 200.0, 30, 200.0, [0, 1, 5]),
                ]
            }
        ).encode(),
    )
    ingest.submit("dev2", json.dumps({"reports": [_telemetry("cd" * 32, 150.0, 5, 50.0, [])]}).encode())
    assert ingest.depth == 2
    assert api.ok("GET", "/api/telemetry") == []  # queued: nothing stored before the writer runs
    ingest.start()
    assert ingest.wait_idle(30)
    ingest.stop()
    assert msgs.stats.events["telemetry_rows"] == 3
    rows = api.ok("GET", "/api/telemetry", params={"device_id": "dev1"})
    assert [r["ts"] for r in rows] == [200.0, 100.0]
    assert len(api.ok("GET", "/api/telemetry", params={"since": 120, "until": 200})) == 1
    summary = api.ok("GET", "/api/telemetry/summary", params={"device_id": "dev1"})
    assert summary["inference_count"] == 40 and summary["errors"] == 2 and summary["devices"] == 1
    assert summary["latency_us_mean"] == pytest.approx((10 * 100 + 30 * 200) / 40)
    assert summary["class_histogram"] == [1, 3, 5]
    everything = api.ok("GET", "/api/telemetry/summary")
    assert everything["reports"] == 3 and everything["devices"] == 2
    empty = api.ok("GET", "/api/telemetry/summary", params={"since": 1000})
    assert empty["reports"] == 0 and empty["latency_us_mean"] is None
    # invalid queries
    assert api.client.get("/api/telemetry", params={"device_id": "nope"}).status_code == 404
    assert api.client.get("/api/telemetry", params={"model_version_id": 9}).status_code == 404
    resp = api.client.get("/api/telemetry", params={"since": 10, "until": 5})
    assert resp.status_code == 422 and "until must be after since" in resp.json()["detail"]
    assert api.client.get("/api/telemetry", params={"limit": 0}).status_code == 422
    assert api.client.get("/api/telemetry", params={"since": "yesterday"}).status_code == 422


def test_gateway_stats_endpoint(api):
    stats = api.ok("GET", "/api/gateway/stats")
    assert stats["connected"] is False and stats["malformed"] == {} and "received" in stats


def test_password_file_follows_provision_rotate_delete(api, tmp_path):
    from tinyfleet.server.services.credentials import check_password

    path = tmp_path / "mosquitto.passwd"
    api.ctx.settings = api.ctx.settings.with_overrides(
        mqtt_password_file=path, mqtt_url="mqtt://tinyfleet-server:gw-secret@127.0.0.1:1"
    )
    first = api.ok("POST", "/api/devices", 201, json={"id": "dev-p", "hardware_class": 1})["mqtt"]["password"]

    def entries() -> dict[str, str]:
        return dict(line.split(":", 1) for line in path.read_text().splitlines())

    assert check_password(first, entries()["dev-p"])
    second = api.ok("POST", "/api/devices/dev-p/credentials")["mqtt"]["password"]
    now = entries()
    assert check_password(second, now["dev-p"]) and not check_password(first, now["dev-p"])
    assert check_password("gw-secret", now["tinyfleet-server"])
    api.ok("DELETE", "/api/devices/dev-p", 204)
    assert "dev-p" not in entries()
