"""The audit log: mutating /api calls recorded with who and the answer (refused ones too), reads not,
and never a token or a secret from a body."""

from __future__ import annotations

import logging
import time

from sqlalchemy import text

from tests.support.identity import bearer, tokens_by_role


def _log(api, **params):
    return api.ok("GET", "/api/audit", params=params)


def test_mutations_are_recorded_with_actor_target_and_status(api) -> None:
    tokens = tokens_by_role(api)  # 3 users and 3 tokens: 6 entries by bootstrap
    operator, viewer = bearer(tokens["operator"]), bearer(tokens["viewer"])
    api.ok("POST", "/api/devices", 201, json={"id": "dev-a", "hardware_class": 1}, headers=operator)
    api.ok("PATCH", "/api/devices/dev-a", json={"name": "first"}, headers=operator)
    assert api.client.delete("/api/devices/dev-a", headers=viewer).status_code == 403
    assert api.client.delete("/api/devices/dev-a", headers=bearer("tf_stolen?")).status_code == 401
    assert api.client.post("/api/devices", json={"id": 5}, headers=operator).status_code == 422
    assert api.client.post("/api/rollouts/999/pause", headers=operator).status_code == 404
    entries = _log(api, limit=6)  # newest first
    got = [(e["actor"], e["method"], e["path"], e["target"], e["status_code"]) for e in reversed(entries)]
    assert got == [
        ("otto", "POST", "/api/devices", None, 201),
        ("otto", "PATCH", "/api/devices/dev-a", "device_id=dev-a", 200),
        ("vera", "DELETE", "/api/devices/dev-a", "device_id=dev-a", 403),
        ("unknown", "DELETE", "/api/devices/dev-a", "device_id=dev-a", 401),
        ("otto", "POST", "/api/devices", None, 422),
        ("otto", "POST", "/api/rollouts/999/pause", "rollout_id=999 command=pause", 404),
    ]
    assert entries[3]["detail"] == "DELETE /api/devices/{device_id} needs the admin role; vera is viewer"
    assert entries[0]["detail"] and entries[5]["detail"] == ""
    assert [e["actor"] for e in _log(api, actor="bootstrap")] == ["bootstrap"] * 6
    assert len(_log(api)) == 12


def test_reads_are_not_recorded(api) -> None:
    viewer = bearer(tokens_by_role(api)["viewer"])
    before = len(_log(api))
    for url in ("/api/devices", "/api/me", "/api/tokens", "/api/models", "/api/audit"):
        api.client.get(url, headers=viewer)
    api.client.head("/api/devices", headers=viewer)
    assert len(_log(api)) == before


def test_no_token_or_secret_is_stored(api) -> None:
    tokens = tokens_by_role(api)
    made = api.ok("POST", "/api/tokens", 201, json={"name": "extra"}, headers=bearer(tokens["viewer"]))
    device = api.ok("POST", "/api/devices", 201, json={"id": "dev-s", "hardware_class": 1})
    password = device["mqtt"]["password"]
    api.client.post(
        "/api/devices", json={"id": "bad id", "secret": "hunter2"}, headers=bearer(tokens["admin"])
    )
    with api.ctx.db.connect() as conn:
        rows = [" ".join(str(v) for v in r) for r in conn.execute(text("SELECT * FROM audit_log"))]
    assert len(rows) == 9
    dump = "\n".join(rows)
    for secret in (*tokens.values(), made["token"], password, "hunter2", api.ctx.settings.api_token):
        assert secret not in dump


def test_audit_filters_and_needs_admin(api) -> None:
    tokens = tokens_by_role(api)
    middle = time.time()
    api.ok(
        "POST",
        "/api/devices",
        201,
        json={"id": "dev-f", "hardware_class": 1},
        headers=bearer(tokens["admin"]),
    )
    recent = _log(api, since=middle)
    assert [(e["actor"], e["path"]) for e in recent] == [("ada", "/api/devices")]
    assert len(_log(api, limit=2)) == 2
    assert _log(api, actor="nobody") == []
    for role in ("viewer", "operator"):
        assert api.client.get("/api/audit", headers=bearer(tokens[role])).status_code == 403
    assert len(api.ok("GET", "/api/audit", headers=bearer(tokens["admin"]))) == 7


def test_a_failed_audit_write_does_not_fail_the_call(api, caplog) -> None:
    with api.ctx.db.begin() as conn:
        conn.execute(text("DROP TABLE audit_log"))
    with caplog.at_level(logging.ERROR, logger="tinyfleet.server.api.audit"):
        api.ok("POST", "/api/devices", 201, json={"id": "dev-x", "hardware_class": 1})
    assert "audit log: cannot record POST /api/devices" in caplog.text
