"""`tinyfleet users|tokens|audit ...` against a running server (a real uvicorn on a socket)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tinyfleet.cli import app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout if "--json" in args else result.output


def test_users_tokens_and_audit_from_the_cli(cli_server, monkeypatch) -> None:
    code, out = run("users", "create", "otto", "--role", "operator")
    assert code == 0 and "otto (operator) created" in out and "tf_" in out and "shown this once" in out
    code, out = run("users", "create", "vera", "--role", "viewer", "--no-token", "--json")
    vera = json.loads(out)
    assert code == 0 and (vera["name"], vera["role"], vera["disabled"]) == ("vera", "viewer", False)
    assert "token" not in vera
    code, out = run("tokens", "create", "ci", "--user", "vera", "--json")
    created = json.loads(out)
    assert code == 0 and created["token"].startswith("tf_") and created["user"] == "vera"
    code, out = run("users", "list")
    assert code == 0 and "otto" in out and "operator" in out and "vera" in out
    code, out = run("tokens", "list", "--user", "vera")
    assert code == 0 and created["prefix"] in out and created["token"] not in out

    # as vera: a viewer sees her tokens, is refused a provisioning, revokes her own token
    monkeypatch.setenv("TINYFLEET_API_TOKEN", created["token"])
    code, out = run("tokens", "list", "--json")
    assert code == 0 and [t["name"] for t in json.loads(out)] == ["ci"]
    code, out = run("devices", "provision", "--hardware-class", "1", "--id", "dev-v")
    assert code == 1 and "403" in out and "needs the operator role; vera is viewer" in out
    assert "Traceback" not in out
    code, out = run("tokens", "revoke", str(created["id"]))
    assert code == 0 and "revoked" in out
    code, out = run("tokens", "list")
    assert code == 1 and "401" in out

    monkeypatch.setenv("TINYFLEET_API_TOKEN", cli_server.token)
    code, out = run("users", "disable", "otto")
    assert code == 0 and "otto disabled" in out
    code, out = run("audit", "list", "--actor", "vera", "--since", "1h", "--json")
    assert code == 0
    assert [(e["method"], e["path"], e["status_code"]) for e in json.loads(out)] == [
        ("DELETE", f"/api/tokens/{created['id']}", 200),
        ("POST", "/api/devices", 403),
    ]
    code, out = run("audit", "list", "--limit", "3")
    assert code == 0 and "POST /api/users/otto/disable" in out and "bootstrap" in out
    code, out = run("audit", "list", "--since", "yesterday")
    assert code == 1 and "--since" in out
    code, out = run("users", "create", "x y", "--role", "viewer")
    assert code == 1 and "422" in out and "user name" in out
