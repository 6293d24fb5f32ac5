"""The console's reads: device search (GET /api/devices filters, sort, pages), the aggregated overview
and rollout endpoints, the facets, and the page's assets served from the package with no network."""

from __future__ import annotations

import pytest

from tests.support.rollout_fleet import PAIRS, Fleet


def _paused_rollout(fleet: Fleet) -> int:
    """Six devices; dev-2 fails v2's self-test, which pauses the rollout: dev-2 is failing now."""
    for i in range(6):
        fleet.add_device(
            f"dev-{i}", name=f"Pump {i}", group="north" if i < 3 else "south", tags=["a"] if i % 2 else []
        )
    fleet.add_device("spare", online=False, hardware_class=2, blank=True)
    fleet.devices["dev-2"].behaviour = "fail"
    r = fleet.create(
        waves=[{"count": 3}, {"percent": 100}],
        selector={"group": "north"},
        failure_threshold={"count": 1},
        success_threshold_percent=50,
    )
    fleet.step(fleet.t0, rounds=3)
    assert fleet.rollout(r["id"])["state"] == "paused"
    return int(r["id"])


def _ids(fleet: Fleet, **params: object) -> list[str]:
    return [d["id"] for d in fleet.api.ok("GET", "/api/devices", params=params)]


def test_device_search_filters_sort_and_pages(fleet):
    _paused_rollout(fleet)
    everyone = ["dev-0", "dev-1", "dev-2", "dev-3", "dev-4", "dev-5", "spare"]
    assert _ids(fleet) == everyone  # old callers: all devices in id order
    assert _ids(fleet, group="north") == ["dev-0", "dev-1", "dev-2"]
    assert _ids(fleet, tag="a") == ["dev-1", "dev-3", "dev-5"]
    assert _ids(fleet, hardware_class=2) == ["spare"]
    assert _ids(fleet, online=False) == ["spare"]
    assert _ids(fleet, q="PUMP 4") == ["dev-4"]  # the name, any case
    assert _ids(fleet, q="%") == []  # LIKE wildcards are literal
    assert _ids(fleet, failing=True) == ["dev-2"]
    assert "dev-2" not in _ids(fleet, failing=False) and len(_ids(fleet, failing=False)) == 6
    on_v2 = _ids(fleet, model_version_id=fleet.v2["id"])
    assert on_v2 and set(on_v2) <= {"dev-0", "dev-1"}  # confirmed before the pause
    on_v1 = _ids(fleet, model_version_id=fleet.v1["id"])
    assert set(on_v1) | set(on_v2) == set(everyone) - {"spare"}
    assert _ids(fleet, group="south", tag="a", online=True) == ["dev-3", "dev-5"]
    assert _ids(fleet, sort="-id") == everyone[::-1]
    assert _ids(fleet, sort="hardware_class")[-1] == "spare"
    # pages: the header counts every match, the pages cover them once
    resp = fleet.api.client.get("/api/devices", params={"limit": 3, "offset": 3, "sort": "-id"})
    assert resp.status_code == 200 and resp.headers["X-Total-Count"] == "7"
    assert [d["id"] for d in resp.json()] == ["dev-3", "dev-2", "dev-1"]
    resp = fleet.api.client.get("/api/devices", params={"sort": "mqtt_password_hash"})
    assert resp.status_code == 422 and "sort" in resp.json()["detail"]


def test_overview_and_rollout_page_in_one_response_each(fleet):
    rid = _paused_rollout(fleet)
    o = fleet.api.ok("GET", "/api/console/overview")
    devices = o["devices"]
    assert (devices["total"], devices["online"], devices["offline"], devices["failing"]) == (7, 6, 1, 1)
    labels = {v["label"]: v for v in devices["by_version"]}
    assert labels["none"]["devices"] == 1 and labels["none"]["online"] == 0
    assert sum(v["devices"] for v in devices["by_version"]) == 7
    assert labels["hello 1.1.0"]["model_version_id"] == fleet.v2["id"]
    assert sum(devices["by_phase"].values()) == 7
    [failing] = o["failing"]
    assert (failing["device_id"], failing["error_name"], failing["rollout_id"]) == (
        "dev-2",
        "SELFTEST_FAILED",
        rid,
    )
    assert [r["id"] for r in o["rollouts"]] == [rid] and o["rollouts"][0]["state"] == "paused"
    assert o["alerts"] == []

    page = fleet.api.ok("GET", f"/api/console/rollouts/{rid}")
    assert page["rollout"]["id"] == rid and page["soak"] is None  # paused: no countdown runs
    assert [w["wave"] for w in page["waves"]] == [0, 1]
    assert sum(w["total"] for w in page["waves"]) == page["rollout"]["deploy"]["total"]
    assert [f["device_id"] for f in page["failing"]] == ["dev-2"]
    assert fleet.api.client.get("/api/console/rollouts/999").status_code == 404

    facets = fleet.api.ok("GET", "/api/console/facets")
    assert facets["groups"] == ["north", "south"] and facets["tags"] == ["a"]
    assert [h["id"] for h in facets["hardware_classes"]] == [1, 2]
    assert {v["label"] for v in facets["versions"]} == {"hello 1.0.0", "hello 1.1.0"}
    # the same bytes again as a new version (e.g. a re-upload to sign it here): both are offered
    again = fleet.api.ok(
        "POST",
        f"/api/models/{fleet.v1['model_id']}/versions",
        201,
        params={"version": "1.0.1", "hardware_class": 1},
        content=(PAIRS / "hello_world_int8.0.tflite").read_bytes(),
    )
    facets = fleet.api.ok("GET", "/api/console/facets")
    assert {v["label"]: v["id"] for v in facets["versions"]}["hello 1.0.1"] == again["id"]
    assert {v["label"] for v in facets["versions"]} == {"hello 1.0.0", "hello 1.0.1", "hello 1.1.0"}


def test_console_endpoints_need_the_token(api):
    for path in ("/api/console/overview", "/api/console/facets", "/api/console/rollouts/1"):
        assert api.client.get(path, headers={"Authorization": ""}).status_code == 401


def test_page_assets_are_served_from_the_package_without_network(api):
    page = api.client.get("/", headers={"Authorization": ""})
    assert page.status_code == 200 and 'src="/console/js/app.js"' in page.text
    lib = api.client.get("/console/assets/plotly.min.js", headers={"Authorization": ""})
    assert lib.status_code == 200 and lib.headers["content-type"].startswith("text/javascript")
    assert len(lib.content) > 1_000_000 and b"plotly" in lib.content[:2000].lower()
    assert api.client.get("/console/js/app.js").headers["content-type"].startswith("text/javascript")
    assert api.client.get("/console/css/console.css").status_code == 200
    for bad in ("/console/__init__.py", "/console/../app.py", "/console/%2e%2e/app.py", "/console/js"):
        assert api.client.get(bad).status_code == 404, bad


@pytest.mark.slow
def test_search_stays_correct_at_10000_devices(api):
    for g in range(4):
        body = {"count": 2500, "prefix": f"g{g}", "hardware_class": 1 + g % 2, "group": f"grp{g}", "tags": []}
        if g == 3:
            body["tags"] = ["edge"]
        api.ok("POST", "/api/devices/bulk", 201, json=body)
    resp = api.client.get("/api/devices", params={"limit": 50})
    assert resp.headers["X-Total-Count"] == "10000" and len(resp.json()) == 50
    seen: list[str] = []
    for offset in range(0, 5000, 1000):
        page = api.client.get(
            "/api/devices", params={"hardware_class": 2, "sort": "-id", "limit": 1000, "offset": offset}
        )
        assert page.headers["X-Total-Count"] == "5000"
        seen += [d["id"] for d in page.json()]
    assert seen == sorted({f"g{g}-{i:05d}" for g in (1, 3) for i in range(2500)}, reverse=True)
    resp = api.client.get("/api/devices", params={"tag": "edge", "q": "g3-0249", "limit": 100})
    assert [d["id"] for d in resp.json()] == [f"g3-0249{i}" for i in range(10)]
    overview = api.ok("GET", "/api/console/overview")["devices"]
    assert overview["total"] == 10000 and overview["by_version"] == [
        {"model_version_id": None, "label": "none", "devices": 10000, "online": 0}
    ]
