"""`tinyfleet alerts list` against a running server (alerts stored as the drift check stores them)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.support.paths import SHARED_MODELS
from tinyfleet.cli import app
from tinyfleet.server.models import Alert

MODEL = SHARED_MODELS / "hello_world_int8.tflite"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout if "--json" in args else result.output


@pytest.mark.slow  # a real server: about 6 s
def test_alerts_list(cli_server, shared_models):
    assert run("models", "create", "hello")[0] == 0
    assert run("models", "upload", "hello", str(MODEL), "--version", "1.0.0", "--hardware-class", "1")[0] == 0
    code, out = run("alerts", "list", "--json")
    assert code == 0 and json.loads(out) == []
    with cli_server.ctx.session() as s:
        vid = int(json.loads(run("models", "versions", "hello", "--json")[1])[0]["id"])
        s.add(
            Alert(
                kind="confidence_drop",
                model_version_id=vid,
                state="resolved",
                opened_at=1.0,
                last_seen_at=2.0,
                resolved_at=3.0,
                numbers={},
                message="was low",
            )
        )
        s.add(
            Alert(
                kind="class_drift",
                model_version_id=vid,
                state="open",
                opened_at=4.0,
                last_seen_at=5.0,
                numbers={"value": 0.2},
                message="class distribution JSD 0.2000",
            )
        )
    code, out = run("alerts", "list")
    assert code == 0 and "class_drift" in out and "confidence_drop" in out and "JSD 0.2000" in out
    code, out = run("alerts", "list", "--state", "open", "--model", "hello", "--version", "1.0.0", "--json")
    assert code == 0 and [a["kind"] for a in json.loads(out)] == ["class_drift"]
    code, out = run("alerts", "list", "--state", "closed")
    assert code == 1 and "state" in out
    code, out = run("alerts", "list", "--model", "hello")
    assert code == 1 and "--model and --version go together" in out
