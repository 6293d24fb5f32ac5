"""POST /api/devices/bulk: many devices in one transaction, all or none, credentials the broker accepts."""

from __future__ import annotations

import json
import time

from sqlmodel import select

from tests.support.broker_login import ACL, connect_as
from tinyfleet.server.api.limits import LARGE_JSON
from tinyfleet.server.config import DEFAULT_MAX_JSON_BYTES
from tinyfleet.server.models import Device
from tinyfleet.server.schemas import MAX_BULK_DEVICES
from tinyfleet.server.services.credentials import check_password, hash_password
from tinyfleet.server.stack import run_stack


def _hashes(api) -> dict[str, str]:
    with api.ctx.session() as s:
        return dict(s.exec(select(Device.id, Device.mqtt_password_hash)).all())


def test_count_form_creates_devices_with_working_passwords_and_one_password_file_write(api, monkeypatch):
    writes: list[list[tuple[str, str]]] = []
    monkeypatch.setattr(api.ctx, "add_password_entries", writes.append)
    out = api.ok(
        "POST",
        "/api/devices/bulk",
        201,
        json={"count": 120, "prefix": "lot7", "start": 5, "hardware_class": 3, "group": "g", "tags": ["t"]},
    )
    ids = [d["id"] for d in out["devices"]]
    assert out["count"] == 120 and ids[0] == "lot7-00005" and ids[-1] == "lot7-00124"
    assert out["trust_store"] and out["mqtt"] == {"host": None, "port": None, "tls": False}
    hashes = _hashes(api)
    assert all(check_password(d["password"], hashes[d["id"]]) for d in out["devices"][:5])
    assert len({d["password"] for d in out["devices"]}) == 120
    assert [u for u, _ in writes[0]] == ids and len(writes) == 1  # one append of all, after the commit
    d = api.ok("GET", "/api/devices/lot7-00099")
    assert (d["hardware_class"], d["group"], d["tags"]) == (3, "g", ["t"])
    # without a prefix the server chooses the ids
    rand = api.ok("POST", "/api/devices/bulk", 201, json={"count": 3, "hardware_class": 1})
    assert all(d["id"].startswith("dev-") for d in rand["devices"])


def test_existing_id_is_409_naming_it_and_nothing_is_created(api):
    api.ok("POST", "/api/devices", 201, json={"id": "site-00002", "hardware_class": 1})
    api.ok("POST", "/api/devices", 201, json={"id": "other", "hardware_class": 1})
    resp = api.client.post("/api/devices/bulk", json={"count": 5, "prefix": "site", "hardware_class": 1})
    assert resp.status_code == 409
    assert resp.json()["detail"] == "1 device id(s) exist already, nothing was created: site-00002"
    devices = [{"id": "new-a", "hardware_class": 1}, {"id": "other", "hardware_class": 1}]
    assert api.client.post("/api/devices/bulk", json={"devices": devices}).status_code == 409
    assert sorted(d["id"] for d in api.ok("GET", "/api/devices")) == ["other", "site-00002"]


def test_invalid_requests_are_422_with_one_reason(api):
    def detail(body) -> str:
        resp = api.client.post("/api/devices/bulk", json=body)
        assert resp.status_code == 422, resp.text
        return json.dumps(resp.json()["detail"])

    assert "either count" in detail({"count": 2, "hardware_class": 1, "devices": [{"hardware_class": 1}]})
    assert "either count" in detail({})
    assert "needs hardware_class" in detail({"count": 2})
    assert "reserved" in detail({"count": 2, "prefix": "tinyfleet", "hardware_class": 1})
    assert "longer than 64" in detail(
        {"count": 2, "prefix": "a" * 57, "start": 99_999_999, "hardware_class": 1}
    )
    assert "less than or equal to 10000" in detail({"count": MAX_BULK_DEVICES + 1, "hardware_class": 1})
    dup = [{"id": "same", "hardware_class": 1}, {"id": "same", "hardware_class": 2}]
    assert "repeated in the request: same" in detail({"devices": dup})
    assert "reserved" in detail({"devices": [{"id": "tinyfleet-server", "hardware_class": 1}]})
    assert "go with count" in detail({"devices": [{"hardware_class": 1}], "group": "g"})
    assert api.ok("GET", "/api/devices") == []


def test_bulk_route_has_its_own_body_limit(api):
    ((_, _, limit),) = LARGE_JSON
    assert limit > 10 * DEFAULT_MAX_JSON_BYTES
    # above the JSON default but within its own limit: parsed (then refused for its size in devices)
    devices = [
        {"id": f"d-{i:06d}", "hardware_class": 1, "name": "n" * 90} for i in range(MAX_BULK_DEVICES + 1)
    ]
    body = json.dumps({"devices": devices}).encode()
    assert DEFAULT_MAX_JSON_BYTES < len(body) < limit
    headers = {"Content-Type": "application/json"}
    resp = api.client.post("/api/devices/bulk", content=body, headers=headers)
    assert resp.status_code == 422 and "at most 10000" in resp.text
    assert api.client.post("/api/devices", content=body, headers=headers).status_code == 413
    big = b'{"devices": [' + b" " * limit + b"]}"
    assert api.client.post("/api/devices/bulk", content=big, headers=headers).status_code == 413


def test_bulk_credentials_log_in_to_a_real_broker(tmp_path, dev_broker):
    passwd = tmp_path / "mosquitto.passwd"
    passwd.write_text(f"tinyfleet-server:{hash_password('gateway-secret')}\n")
    broker = dev_broker(password_file=passwd, acl_file=ACL)
    url = f"mqtt://tinyfleet-server:gateway-secret@127.0.0.1:{broker.port}"
    with run_stack(url, data_dir=tmp_path / "server", mqtt_password_file=passwd, background=False) as st:
        with st.client() as c:
            resp = c.post("/api/devices/bulk", json={"count": 300, "prefix": "fleet", "hardware_class": 1})
            assert resp.status_code == 201, resp.text
            out = resp.json()
        lines = passwd.read_text().splitlines()
        assert len(lines) == 301 and lines[-1].startswith("fleet-00299:$7$")
        broker.reload()
        time.sleep(0.3)  # SIGHUP is asynchronous; mosquitto cannot be asked whether it has reloaded
        for d in (out["devices"][0], out["devices"][-1]):
            client, res = connect_as(broker.port, d["id"], d["password"])
            assert not res["reason"].is_failure, res["reason"]
            client.disconnect()
            client.loop_stop()
        bad, res = connect_as(broker.port, "fleet-00001", out["devices"][0]["password"])
        assert res["reason"].is_failure
        bad.loop_stop()
