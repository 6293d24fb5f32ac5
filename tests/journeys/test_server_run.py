"""User journey: `tinyfleet server run --broker` in its own process. A device provisioned through the API
can log in to the managed broker at once; Ctrl-C or SIGTERM stops the broker with the server; SIGKILL of
the server takes the broker down too (issue 11 item 5: it used to be orphaned) and a restart serves the
same address; a fixed --broker-port that something else holds is a one-line error."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.mqtt_probe import connects
from tests.support.paths import REPO
from tests.support.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
TOKEN = "journey-token-0123456789"


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def _env(data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TINYFLEET_DATA_DIR=str(data),
        TINYFLEET_DATABASE_URL=f"sqlite:///{data / 'tinyfleet.db'}",
        TINYFLEET_API_TOKEN=TOKEN,
    )
    env.pop("TINYFLEET_MQTT_URL", None)
    return env


def _start(data: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tinyfleet.cli", "server", "run", "--broker", "--port", str(port), *extra]
    return subprocess.Popen(cmd, cwd=REPO, env=_env(data), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_healthy(proc: subprocess.Popen[bytes], c: httpx.Client) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if c.get("/healthz").status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"server did not come up (exit code {proc.poll()})")


@contextlib.contextmanager
def _client(port: int) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as c:
        yield c


def _cleanup(proc: subprocess.Popen[bytes], broker_pids: list[int]) -> list[int]:
    """Kill what a failed test left; the broker pids that were still alive."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    leftovers = [pid for pid in broker_pids if pid and _alive(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGTERM)
    return leftovers


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_server_run_broker_end_to_end(tmp_path: Path, stop_signal: signal.Signals) -> None:
    port = free_port()
    proc = _start(tmp_path / "data", port)
    pid_file = tmp_path / "data" / "mosquitto.pid"
    broker_pid = 0
    try:
        with _client(port) as c:
            _wait_healthy(proc, c)
            broker_pid = int(pid_file.read_text())
            answer = c.post("/api/devices", json={"id": "dev-run", "hardware_class": 1}).json()
            assert c.get("/api/gateway/stats").json()["connected"] in (True, False)
        mqtt = answer["mqtt"]
        assert connects(mqtt["port"], "dev-run", mqtt["password"])
        proc.send_signal(stop_signal)
        out, _ = proc.communicate(timeout=60)
    finally:
        if _cleanup(proc, [broker_pid]):
            pytest.fail("mosquitto outlived `tinyfleet server run --broker`")
    text = out.decode(errors="replace")
    assert "Traceback" not in text, text
    assert proc.returncode in ((0,) if stop_signal == signal.SIGTERM else (0, 130)), text
    assert _wait_dead(broker_pid)
    assert not pid_file.exists()


def test_sigkill_takes_the_broker_down_and_restart_serves_the_same_address(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = _start(data, port)
    pids: list[int] = []
    try:
        with _client(port) as c:
            _wait_healthy(proc, c)
            pids.append(int((data / "mosquitto.pid").read_text()))
            mqtt = c.post("/api/devices", json={"id": "dev-kill", "hardware_class": 1}).json()["mqtt"]
        assert connects(mqtt["port"], "dev-kill", mqtt["password"])
        proc.kill()  # SIGKILL: no shutdown code of the server runs
        proc.communicate(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
        assert _wait_dead(pids[0]), "mosquitto was orphaned by the killed server"

        proc = _start(data, port)
        with _client(port) as c:
            _wait_healthy(proc, c)
            pids.append(int((data / "mosquitto.pid").read_text()))
            assert c.get("/api/devices/dev-kill").json()["id"] == "dev-kill"
        assert pids[1] != pids[0]
        state = json.loads((data / "broker.json").read_text())
        assert state["port"] == mqtt["port"] and state["pid"] == pids[1]
        # The device's provisioned address and password still work against the new broker.
        assert connects(mqtt["port"], "dev-kill", mqtt["password"])
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode(errors="replace")
    finally:
        if _cleanup(proc, pids):
            pytest.fail("mosquitto outlived `tinyfleet server run --broker`")
    assert _wait_dead(pids[1])


def test_leftover_broker_of_a_killed_server_is_stopped_and_its_port_reused(tmp_path: Path) -> None:
    """Without PR_SET_PDEATHSIG (not Linux) a broker survives its server: stand one in by starting
    mosquitto with the server's config ourselves and recording it, as a killed server would leave it."""
    data = tmp_path / "data"
    port = free_port()
    proc = _start(data, port)
    pids: list[int] = []
    leftover: subprocess.Popen[bytes] | None = None
    try:
        with _client(port) as c:
            _wait_healthy(proc, c)
        state = json.loads((data / "broker.json").read_text())
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.stdout is not None
        proc.stdout.close()
        leftover = subprocess.Popen(["mosquitto", "-c", state["config"]], stderr=subprocess.DEVNULL)
        pids.append(leftover.pid)
        deadline = time.monotonic() + 10
        while not connects_tcp(state["port"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        (data / "broker.json").write_text(json.dumps({**state, "pid": leftover.pid}))

        proc = _start(data, port)
        with _client(port) as c:
            _wait_healthy(proc, c)
            pids.append(int((data / "mosquitto.pid").read_text()))
        assert leftover.wait(timeout=10) is not None  # stopped by the new server
        assert json.loads((data / "broker.json").read_text())["port"] == state["port"]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert "left by a previous run" in out.decode(errors="replace")
    finally:
        if leftover is not None and leftover.poll() is None:
            leftover.kill()
            leftover.wait()
        if _cleanup(proc, pids):
            pytest.fail("mosquitto outlived `tinyfleet server run --broker`")


def connects_tcp(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_fixed_broker_port_taken_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        proc = _start(tmp_path / "data", free_port(), "--broker-port", str(taken))
        out, _ = proc.communicate(timeout=60)
    text = out.decode(errors="replace")
    assert proc.returncode == 1, text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{taken} is already in use" in errors[0], text
    assert not (tmp_path / "data" / "mosquitto.pid").exists()
