"""Out-of-range and ill-typed requests on every resource get a 4xx with a message, never a 500."""

from __future__ import annotations

HUGE = 10**20

REQUESTS = [
    ("GET", f"/api/models/{HUGE}", None),
    ("GET", "/api/models/-1", None),
    ("PATCH", f"/api/models/{HUGE}", {"description": "x"}),
    ("GET", f"/api/models/{HUGE}/versions", None),
    ("POST", f"/api/models/{HUGE}/versions?version=1.0.0&hardware_class=1", None),
    ("POST", f"/api/models/1/versions?version=1.0.0&hardware_class={HUGE}", None),
    ("POST", "/api/models/1/versions?version=99999999.0.0&hardware_class=1", None),
    ("POST", "/api/models/1/versions?version=01.0.0&hardware_class=1", None),
    ("POST", "/api/models/1/versions?version=1.0.0&hardware_class=1&min_runtime_version=1.256.0", None),
    ("POST", "/api/models", b"\xff\xfe not text"),
    ("GET", f"/api/versions/{HUGE}", None),
    ("GET", f"/api/packages?model_version_id={HUGE}", None),
    ("GET", "/api/packages/" + "x" * 5000, None),
    ("GET", f"/api/devices?hardware_class={HUGE}", None),
    ("GET", "/api/devices/" + "y" * 5000, None),
    ("GET", "/api/devices/a%00b", None),
    ("GET", "/api/packages/pkg-%00", None),
    ("POST", "/api/devices", {"hardware_class": 1, "name": "nul\u0000name"}),
    ("POST", "/api/models", {"name": "ok", "description": "nul\u0000"}),
    ("POST", "/api/devices", {"hardware_class": HUGE}),
    ("POST", "/api/devices", {"hardware_class": 1, "tags": ["t"] * 1000}),
    ("POST", "/api/devices", {"hardware_class": 1, "name": "n" * 1000}),
    ("POST", "/api/devices", [1, 2, 3]),
    ("PUT", f"/api/hardware-classes/{HUGE}", {"name": "x", "chunk_size": 1024}),
    ("GET", f"/api/rollouts/{HUGE}", None),
    ("POST", f"/api/rollouts/{HUGE}/start", None),
    ("GET", f"/api/rollouts/{HUGE}/actions", None),
    ("POST", "/api/rollouts", {"name": "r", "model_version_id": HUGE}),
    ("POST", "/api/rollouts", {"name": "r", "model_version_id": 1, "selector": {"hardware_class": HUGE}}),
    ("POST", "/api/rollouts", {"name": "r", "model_version_id": 1, "waves": [{"count": HUGE}]}),
    ("POST", "/api/rollouts", {"name": "r", "model_version_id": 1, "soak_seconds": -1}),
    ("GET", f"/api/telemetry?model_version_id={HUGE}", None),
    ("GET", "/api/telemetry?limit=100000000", None),
    ("GET", f"/api/telemetry/summary?model_version_id={HUGE}", None),
]


def test_no_500(api):
    for method, url, body in REQUESTS:
        if isinstance(body, bytes):
            resp = api.client.request(method, url, content=body, headers={"Content-Type": "application/json"})
        else:
            resp = api.client.request(method, url, json=body)
        assert 400 <= resp.status_code < 500, f"{method} {url}: {resp.status_code} {resp.text[:300]}"
        assert resp.json()["detail"], url


def test_full_u32_hardware_class_round_trips(api):
    out = api.ok("POST", "/api/devices", 201, json={"id": "big-hw", "hardware_class": 0xFFFFFFFF})
    assert out["device"]["hardware_class"] == 0xFFFFFFFF
    api.ok("PUT", f"/api/hardware-classes/{0xFFFFFFFF}", json={"name": "max", "chunk_size": 4096})
    assert api.ok("GET", "/api/devices", params={"hardware_class": 0xFFFFFFFF})[0]["id"] == "big-hw"


def test_schema_matches_models_after_migrations(api):
    """The hand-written Alembic migration creates exactly the tables the SQLModel classes describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    with api.ctx.db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
