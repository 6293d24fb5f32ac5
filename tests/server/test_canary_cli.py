"""`tinyfleet rollouts create --canary ...` and `rollouts show` against a running server."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.support.paths import SHARED_MODELS
from tinyfleet.cli import app

MODEL = SHARED_MODELS / "hello_world_int8.tflite"


def run(*args: str) -> tuple[int, str]:
    """Exit code and stdout (stderr: the warning that a rollout matches no device yet)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout if "--json" in args else result.output


def test_create_with_canary_and_show(cli_server, shared_models):
    assert run("models", "create", "hello")[0] == 0
    assert run("models", "upload", "hello", str(MODEL), "--version", "1.0.0", "--hardware-class", "1")[0] == 0
    base = ("rollouts", "create", "--model", "hello", "--version", "1.0.0", "--wave", "1", "--wave", "100%")
    code, out = run(*base, "--canary", "--json")
    assert code == 0, out
    assert json.loads(out)["canary"]["window_seconds"] == 300  # `--canary` alone: every default
    code, out = run(*base, "--canary-window", "120", "--canary-on-fail", "rollback", "--json")
    created = json.loads(out)
    assert created["canary"]["window_seconds"] == 120 and created["canary"]["on_fail"] == "rollback"
    assert json.loads(run(*base, "--json")[1])["canary"] is None
    code, out = run("rollouts", "show", str(created["id"]), "--json")
    assert code == 0 and json.loads(out)["gates"] == []
    code, out = run("rollouts", "show", str(created["id"]), "--no-actions")
    assert code == 0 and "canary gate: window 120 s" in out and "on fail rollback" in out
    code, out = run(*base[:-2], "--canary")  # one wave: nothing to gate
    assert code == 1 and "at least two waves" in out
