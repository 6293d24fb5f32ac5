"""The control-plane CLI in scripts: --json with the API's field names, whole tables when piped, exit
codes of `rollouts watch`, the warning of a rollout matching no device, the confirmation of a rollback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.support.paths import SHARED_MODELS
from tinyfleet.cli import app
from tinyfleet.server.cli import rollouts as rollouts_cli
from tinyfleet.server.models import Rollout

MODEL = SHARED_MODELS / "hello_world_int8.tflite"


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def js(*args: str) -> Any:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def model(cli_server, shared_models) -> dict[str, Any]:
    created = js("models", "create", "hello", "--description", "a sine")
    assert created["name"] == "hello" and isinstance(created["id"], int)
    version = js("models", "upload", "hello", str(MODEL), "--version", "1.0.0", "--hardware-class", "1")
    assert version["version"] == "1.0.0" and version["packages"][0]["hardware_class"] == 1
    return version


def _create_rollout(*selector: str) -> tuple[dict[str, Any], str]:
    code, out, err = run("rollouts", "create", "--model", "hello", "--version", "1.0.0", *selector, "--json")
    assert code == 0, err
    return json.loads(out), err


def test_json_output_has_the_apis_field_names(cli_server, model) -> None:
    with cli_server.client() as c:
        assert js("models", "list") == c.get("/api/models").json()
        assert js("models", "versions", "hello") == c.get(f"/api/models/{model['model_id']}/versions").json()
        assert js("packages", "list") == c.get("/api/packages").json()
        provisioned = js("devices", "provision", "--hardware-class", "1", "--id", "dev-1", "--tag", "eu")
        assert provisioned["device"]["id"] == "dev-1" and provisioned["mqtt"]["password"]
        assert js("devices", "list", "--tag", "eu") == c.get("/api/devices").json()
        shown = js("devices", "show", "dev-1")
        assert shown == {**c.get("/api/devices/dev-1").json(), "actions": []}
        assert js("devices", "update", "dev-1", "--group", "lab")["group"] == "lab"
        assert js("devices", "credentials", "dev-1")["mqtt"]["username"] == "dev-1"

        rollout, err = _create_rollout("--tag", "eu")
        assert err == ""  # dev-1 matches: no warning
        assert rollout == c.get(f"/api/rollouts/{rollout['id']}").json()
        assert js("rollouts", "list") == c.get("/api/rollouts").json()
        assert js("rollouts", "show", str(rollout["id"]), "--no-actions") == rollout
        assert js("rollouts", "show", str(rollout["id"]))["actions"] == []
        assert js("rollouts", "abort", str(rollout["id"]))["state"] == "aborted"

        assert js("telemetry", "list") == []
        assert js("telemetry", "summary") == c.get("/api/telemetry/summary").json()
        status = js("server", "status")
        assert status["readyz"]["ready"] is True and "received" in status["gateway"]


def test_piped_tables_are_not_cut(cli_server) -> None:
    tags = [f"tag-number-{i:02d}" for i in range(12)]  # a tags cell of 180 characters
    args = [arg for tag in tags for arg in ("--tag", tag)]
    code, _out, err = run("devices", "provision", "--hardware-class", "7", "--id", "dev-wide", *args)
    assert code == 0, err
    code, out, _err = run("devices", "list")
    assert code == 0
    assert any("dev-wide" in line and ",".join(tags) in line for line in out.splitlines()), out


def test_rollout_matching_no_device_warns_on_stderr(cli_server, model) -> None:
    js("devices", "provision", "--hardware-class", "1", "--id", "dev-eu", "--tag", "eu")
    js("devices", "provision", "--hardware-class", "2", "--id", "dev-hw2", "--tag", "us")
    for selector in (["--tag", "mars"], ["--tag", "us"], ["--group", "nowhere"], ["--device", "dev-hw2"]):
        rollout, err = _create_rollout(*selector)
        assert rollout["state"] == "draft"  # stdout is still the JSON alone
        assert _lines(err) == [_lines(err)[0]] and err.startswith("warning: rollout"), (selector, err)
        assert "matches no device" in err
    for selector in (["--tag", "eu"], ["--device", "dev-eu"], ["--hardware-class", "1"], []):
        _rollout, err = _create_rollout(*selector)
        assert err == "", (selector, err)
    code, out, err = run("rollouts", "create", "--model", "hello", "--version", "1.0.0", "--tag", "mars")
    assert code == 0 and "draft" in out and "matches no device" in err


def _set_state(stack, rollout_id: int, state: str) -> None:
    with stack.ctx.session() as s:
        rollout = s.get(Rollout, rollout_id)
        assert rollout is not None
        rollout.state, rollout.state_reason = state, f"set to {state} by the test"


@pytest.mark.parametrize(
    ("state", "code"),
    [("completed", 0), ("paused", 1), ("rolled_back", 1), ("aborted", 1), ("draft", 1)],
)
def test_watch_exit_code_is_0_only_when_completed(cli_server, model, state: str, code: int) -> None:
    rollout, _err = _create_rollout()
    _set_state(cli_server, rollout["id"], state)
    exit_code, out, err = run("rollouts", "watch", str(rollout["id"]), "--interval", "0.1")
    assert exit_code == code, (out, err)
    assert state in out
    if code:
        assert _lines(err) == [
            f"error: rollout {rollout['id']} is {state}, not completed: set to {state} by the test"
        ]
    else:
        assert err == ""


def test_rollback_asks_first(cli_server, model, monkeypatch) -> None:
    rollout, _err = _create_rollout()
    rid = str(rollout["id"])
    # stdin is not a terminal (a script, CI): an error line at once, never a prompt that hangs
    code, out, err = run("rollouts", "rollback", rid)
    assert code == 1 and out == ""
    assert _lines(err) == ["error: rollback needs confirmation: give --yes (stdin is not a terminal)"]

    monkeypatch.setattr(rollouts_cli, "_stdin_is_terminal", lambda: True)
    code, out, err = run("rollouts", "rollback", rid, stdin="n\n")
    assert code == 1 and "Roll back rollout" in out and _lines(err) == ["error: not rolled back"]

    # confirmed (or --yes): the request reaches the server, which refuses to roll back a draft
    code, out, err = run("rollouts", "rollback", rid, stdin="y\n")
    assert code == 1 and "/rollback: 409" in err
    monkeypatch.setattr(rollouts_cli, "_stdin_is_terminal", lambda: False)
    code, out, err = run("rollouts", "rollback", rid, "--yes")
    assert code == 1 and "/rollback: 409" in err and "confirmation" not in err
