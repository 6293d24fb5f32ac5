"""Users and API tokens: shown once, stored as a hash, refused at once when revoked or disabled; the
bootstrap token only in development; production's start check and the offline first admin."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.support.identity import bearer, tokens_by_role
from tinyfleet.cli import app as cli_app
from tinyfleet.server.app import create_app
from tinyfleet.server.config import ConfigError


def test_token_is_shown_once_and_only_its_hash_is_stored(api) -> None:
    api.ok("POST", "/api/users", 201, json={"name": "vera", "role": "viewer"})
    created = api.ok("POST", "/api/tokens", 201, json={"name": "laptop", "user": "vera"})
    token = created["token"]
    assert token.startswith("tf_") and len(token) >= 43 and created["prefix"] == token[:10]
    listed = api.ok("GET", "/api/tokens", params={"user": "vera"})
    assert [t["name"] for t in listed] == ["laptop"] and all("token" not in t for t in listed)
    assert token not in json.dumps(listed)
    with api.ctx.db.connect() as conn:
        rows = [tuple(r) for r in conn.execute(text("SELECT * FROM api_tokens"))]
    assert len(rows) == 1 and hashlib.sha256(token.encode()).hexdigest() in rows[0]
    assert not any(token in str(v) for v in rows[0])
    assert api.ok("GET", "/api/me", headers=bearer(token)) == {"name": "vera", "role": "viewer"}
    assert api.ok("GET", "/api/tokens", params={"user": "vera"})[0]["last_used_at"] is not None


def test_revoked_token_is_refused_at_once(api) -> None:
    token = tokens_by_role(api)["operator"]
    assert api.client.get("/api/me", headers=bearer(token)).status_code == 200  # now cached
    (mine,) = api.ok("GET", "/api/tokens", headers=bearer(token))
    revoked = api.ok("DELETE", f"/api/tokens/{mine['id']}", headers=bearer(token))
    assert revoked["revoked_at"] is not None
    resp = api.client.get("/api/me", headers=bearer(token))
    assert resp.status_code == 401 and resp.json()["detail"].startswith("missing or wrong API token")
    assert resp.headers["www-authenticate"] == "Bearer"


def test_disabled_user_is_refused_at_once(api) -> None:
    tokens = tokens_by_role(api)
    assert api.client.get("/api/me", headers=bearer(tokens["operator"])).status_code == 200
    out = api.ok("POST", "/api/users/otto/disable", headers=bearer(tokens["admin"]))
    assert out["disabled"] is True
    assert api.client.get("/api/me", headers=bearer(tokens["operator"])).status_code == 401
    resp = api.client.post("/api/tokens", json={"name": "again", "user": "otto"})
    assert resp.status_code == 409 and "disabled" in resp.json()["detail"]
    listed = {u["name"]: u["disabled"] for u in api.ok("GET", "/api/users")}
    assert listed == {"ada": False, "otto": True, "vera": False}


def test_users_manage_their_own_tokens_only(api) -> None:
    tokens = tokens_by_role(api)
    viewer, admin = bearer(tokens["viewer"]), bearer(tokens["admin"])
    second = api.ok("POST", "/api/tokens", 201, json={"name": "ci"}, headers=viewer)
    assert second["user"] == "vera"
    assert [t["name"] for t in api.ok("GET", "/api/tokens", headers=viewer)] == ["test", "ci"]
    (ada_token,) = api.ok("GET", "/api/tokens", headers=admin)
    for method, url, body in (
        ("GET", "/api/tokens?user=ada", None),
        ("POST", "/api/tokens", {"name": "x", "user": "ada"}),
        ("DELETE", f"/api/tokens/{ada_token['id']}", None),
    ):
        resp = api.client.request(method, url, json=body, headers=viewer)
        assert resp.status_code == 403 and "admin" in resp.json()["detail"], url
    assert len(api.ok("GET", "/api/tokens", params={"user": "vera"}, headers=admin)) == 2
    api.ok("DELETE", f"/api/tokens/{second['id']}", headers=admin)
    assert api.client.get("/api/me", headers=bearer(second["token"])).status_code == 401
    assert api.client.get("/api/me", headers=viewer).status_code == 200  # the other token still works


def test_user_and_token_validation(api) -> None:
    api.ok("POST", "/api/users", 201, json={"name": "vera", "role": "viewer"})
    for body, status in (
        ({"name": "vera", "role": "viewer"}, 409),
        ({"name": "bob", "role": "root"}, 422),
        ({"name": "Bob Smith", "role": "viewer"}, 422),
        ({"name": "bootstrap", "role": "admin"}, 422),
        ({"name": "unknown", "role": "admin"}, 422),
    ):
        resp = api.client.post("/api/users", json=body)
        assert resp.status_code == status and resp.json()["detail"], body
    assert api.client.post("/api/tokens", json={"name": "x", "user": "nobody"}).status_code == 404
    # the bootstrap token is nobody's: it must say whose token to make
    resp = api.client.post("/api/tokens", json={"name": "x"})
    assert resp.status_code == 422 and "user" in resp.json()["detail"]
    assert api.ok("GET", "/api/tokens") == []
    assert api.client.post("/api/users/nobody/disable").status_code == 404
    assert api.client.delete("/api/tokens/12345").status_code == 404


def test_the_last_admin_cannot_be_disabled(api) -> None:
    api.ok("POST", "/api/users", 201, json={"name": "ada", "role": "admin"})
    resp = api.client.post("/api/users/ada/disable")
    assert resp.status_code == 409 and "last enabled admin" in resp.json()["detail"]
    api.ok("POST", "/api/users", 201, json={"name": "alan", "role": "admin"})
    api.ok("POST", "/api/users/ada/disable")


def test_production_needs_an_admin_and_refuses_the_bootstrap_token(api, monkeypatch) -> None:
    api.ctx.settings = api.ctx.settings.with_overrides(mode="production")
    with pytest.raises(ConfigError, match=r"no enabled admin user.*users create NAME --role admin --offline"):
        create_app(ctx=api.ctx, background=False)
    # the running app (built in development) now answers as production does: no bootstrap principal
    assert api.client.get("/api/me").status_code == 401
    monkeypatch.setenv("TINYFLEET_DATABASE_URL", str(api.ctx.db.url.render_as_string(hide_password=False)))
    result = CliRunner().invoke(
        cli_app, ["users", "create", "root", "--role", "admin", "--offline", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["name"] == "root" and out["role"] == "admin"
    create_app(ctx=api.ctx, background=False)  # starts now
    assert api.ok("GET", "/api/me", headers=bearer(out["token"]["token"])) == {
        "name": "root",
        "role": "admin",
    }
    again = CliRunner().invoke(cli_app, ["users", "create", "root", "--role", "admin", "--offline"])
    assert again.exit_code == 1 and "already exists" in again.output and "Traceback" not in again.output
