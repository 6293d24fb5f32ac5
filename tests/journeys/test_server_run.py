"""User journey: `tinyfleet server run --broker` in its own process. A device provisioned through the API
can log in to the managed broker at once, and Ctrl-C or SIGTERM stops the broker with the server (before
the fix SIGTERM killed the server in uvicorn's exit path and left mosquitto running)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.mqtt_probe import connects
from tests.support.paths import REPO
from tinyfleet.server.devbroker import free_port

pytestmark = pytest.mark.timeout(120)


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_server_run_broker_end_to_end(tmp_path: Path, stop_signal: signal.Signals) -> None:
    port = free_port()
    env = dict(os.environ)
    env.update(
        TINYFLEET_DATA_DIR=str(tmp_path / "data"),
        TINYFLEET_DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'tinyfleet.db'}",
        TINYFLEET_API_TOKEN="journey-token-0123456789",
    )
    env.pop("TINYFLEET_MQTT_URL", None)
    cmd = [sys.executable, "-m", "tinyfleet.cli", "server", "run", "--broker", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pid_file = tmp_path / "data" / "mosquitto.pid"
    broker_pid = 0
    try:
        headers = {"Authorization": "Bearer journey-token-0123456789"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as c:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if c.get("/healthz").status_code == 200:
                        break
                time.sleep(0.2)
            broker_pid = int(pid_file.read_text())
            answer = c.post("/api/devices", json={"id": "dev-run", "hardware_class": 1}).json()
            assert c.get("/api/gateway/stats").json()["connected"] in (True, False)
        mqtt = answer["mqtt"]
        assert connects(mqtt["port"], "dev-run", mqtt["password"])
        proc.send_signal(stop_signal)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if broker_pid and _alive(broker_pid):
            os.kill(broker_pid, signal.SIGTERM)
            pytest.fail("mosquitto outlived `tinyfleet server run --broker`")
    text = out.decode(errors="replace")
    assert "Traceback" not in text, text
    assert proc.returncode in ((0,) if stop_signal == signal.SIGTERM else (0, 130)), text
    deadline = time.monotonic() + 10
    while _alive(broker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(broker_pid)
    assert not pid_file.exists()
