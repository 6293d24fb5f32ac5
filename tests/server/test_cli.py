"""The control-plane CLI against a running server: rich tables, one clear line per API error."""

from __future__ import annotations

from typer.testing import CliRunner

from tests.support.paths import SHARED_MODELS
from tinyfleet.cli import app

MODEL = SHARED_MODELS / "hello_world_int8.tflite"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_cli_workflow(cli_server, tmp_path, shared_models):
    assert run("models", "create", "hello")[0] == 0
    code, out = run("models", "upload", "hello", str(MODEL), "--version", "1.0.0", "--hardware-class", "1")
    assert code == 0 and "1.0.0" in out and "server" in out
    code, out = run("models", "list")
    assert code == 0 and "hello" in out
    code, out = run("devices", "provision", "--hardware-class", "1", "--id", "dev-cli", "--tag", "eu")
    assert code == 0 and "dev-cli" in out and "mqtt password" in out
    code, out = run("devices", "list", "--tag", "eu")
    assert code == 0 and "dev-cli" in out
    code, out = run(
        "rollouts",
        "create",
        "--model",
        "hello",
        "--version",
        "1.0.0",
        "--wave",
        "10%",
        "--wave",
        "5",
        "--fail-percent",
        "20",
        "--on-failure",
        "rollback",
    )
    assert code == 0 and "draft" in out
    code, out = run("rollouts", "list")
    assert code == 0 and "hello 1.0.0" in out
    code, out = run("packages", "list")
    assert code == 0 and "pkg-" in out
    with cli_server.client() as c:
        pkg_id = c.get("/api/packages").json()[0]["id"]
    code, out = run("packages", "download", pkg_id, "--out", str(tmp_path / "p.tfpkg"))
    assert code == 0 and (tmp_path / "p.tfpkg").stat().st_size > 292
    code, out = run("telemetry", "summary", "--device", "dev-cli")
    assert code == 0 and "inference_count" in out
    code, out = run("server", "status")
    assert code == 0 and "mqtt connected" in out


def test_cli_errors_are_one_line(cli_server, tmp_path):
    for args, fragment in [
        (("models", "create", "bad name"), "422"),
        (("devices", "show", "nope"), "device 'nope' not found"),
        (("rollouts", "start", "42"), "rollout 42 not found"),
        (("rollouts", "create", "--model", "none", "--version", "1.0.0"), "model 'none' not found"),
        (
            (
                "models",
                "upload",
                "x",
                str(tmp_path / "missing.tflite"),
                "--version",
                "1.0.0",
                "--hardware-class",
                "1",
            ),
            "model 'x' not found",
        ),
        (("rollouts", "create", "--model", "a", "--version", "1.0.0", "--wave", "ten"), None),
    ]:
        code, out = run(*args)
        assert code != 0, args
        if fragment:
            assert fragment in out, out
            assert "Traceback" not in out
            assert len([line for line in out.splitlines() if line.strip()]) <= 2, out


def test_cli_unreachable_server(monkeypatch):
    monkeypatch.setenv("TINYFLEET_API_URL", "http://127.0.0.1:9")
    code, out = run("devices", "list")
    assert code == 1 and "cannot reach the server" in out
