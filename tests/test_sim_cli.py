"""`tinyfleet simulate` against a running control plane, and its error messages."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from e2e_harness import e2e_env
from typer.testing import CliRunner

from tinyfleet.cli import app

pytestmark = pytest.mark.timeout(180)


def test_simulate_provisions_and_runs_devices(tmp_path: Path) -> None:
    with e2e_env(tmp_path) as env:
        broker = f"mqtt://{env.broker.host}:{env.broker.port}"
        args = ["simulate", "--devices", "3", "--server", env.api.base_url, "--mqtt", broker]
        args += ["--token", "tinyfleet-dev-token", "--prefix", "cli", "--group", "cli", "--duration", "4"]
        # The server writes new device passwords into the broker's password file; an operator's broker
        # re-reads it on SIGHUP. Here a thread plays the operator while the command runs.
        stop = threading.Event()

        def reload_broker() -> None:
            while not stop.wait(0.3):
                env.broker.reload()

        reloader = threading.Thread(target=reload_broker, daemon=True)
        reloader.start()
        try:
            result = CliRunner().invoke(app, args)
        finally:
            stop.set()
            reloader.join()
        assert result.exit_code == 0, result.output
        devices = [d for d in env.api.devices() if d["id"].startswith("cli-")]
        assert sorted(d["id"] for d in devices) == ["cli-00000", "cli-00001", "cli-00002"]
        assert all(d["group"] == "cli" for d in devices)
        # Each one connected with its provisioned credentials and reported its runtime's state.
        assert all(d["reported"] is not None and d["reported"]["phase"] == "idle" for d in devices)
        assert "simulated fleet" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--server", "http://127.0.0.1:1"], "cannot reach the server"),
        (["--profile", "toaster"], "unknown device profile"),
        (["--mqtt", "http://broker"], "--mqtt must look like"),
    ],
)
def test_simulate_reports_bad_input_clearly(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["simulate", "--devices", "1", *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
