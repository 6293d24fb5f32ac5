"""User journey: a device provisioned while Mosquitto runs must be able to connect. Mosquitto reads its
password file only at start and on SIGHUP; before the fix nothing sent it, so `tinyfleet simulate`
against a running server was refused ("Not authorized") for every device."""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.mqtt_probe import connects
from tinyfleet.server.cli import _managed_broker
from tinyfleet.server.config import ConfigError, Settings, settings_from_env
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.services.broker_reload import BrokerReloader
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.server.stack import run_stack

GATEWAY = "tinyfleet-server"


def test_server_reloads_the_broker_through_its_pid_file(tmp_path: Path) -> None:
    passwd = tmp_path / "mosquitto.passwd"
    write_password_file(passwd, [(GATEWAY, hash_password("gateway-secret"))])
    with DevBroker(password_file=passwd, admin_users=[GATEWAY]) as broker:
        pid_file = tmp_path / "mosquitto.pid"
        pid_file.write_text(f"{broker.pid}\n")
        url = f"mqtt://{GATEWAY}:gateway-secret@127.0.0.1:{broker.port}"
        with run_stack(
            url, data_dir=tmp_path / "server", mqtt_password_file=passwd, mqtt_broker_pid_file=pid_file
        ) as st:
            with st.client() as c:
                answers = [
                    c.post("/api/devices", json={"id": f"dev-{i}", "hardware_class": 1}).json()["mqtt"]
                    for i in range(3)
                ]
            # No one but the server touches the broker here: it must have sent the SIGHUP itself.
            for i, creds in enumerate(answers):
                assert connects(broker.port, f"dev-{i}", creds["password"]), f"dev-{i} refused"
            assert st.ctx.broker_reloader.wait_idle()
            assert st.ctx.broker_reloader.reloads >= 1 and st.ctx.broker_reloader.last_error is None
            with st.client() as c:
                stats = c.get("/api/gateway/stats").json()
            assert stats["broker_reloads"] >= 1 and stats["broker_reload_error"] is None


def test_reload_command_runs_after_each_change(tmp_path: Path) -> None:
    marker = tmp_path / "reloaded times"  # a space: the command is split like a shell would split it
    script = tmp_path / "reload.py"
    script.write_text(
        "import sys, pathlib\np = pathlib.Path(sys.argv[1])\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
    )
    reloader = BrokerReloader(command=f"{sys.executable} {script} '{marker}'", settle_seconds=0.0)
    reloader.request()
    assert reloader.wait_idle()
    assert marker.read_text() == "x"
    reloader.request()
    reloader.stop()  # runs what is pending first
    assert marker.read_text() == "xx"
    assert reloader.last_error is None and reloader.reloads == 2


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("missing", "cannot read pid file"),
        ("garbage", "does not hold a process id"),
        ("dead", "is the broker running?"),
    ],
)
def test_reload_failures_are_one_clear_message(tmp_path: Path, setup: str, expected: str) -> None:
    pid_file = tmp_path / "mosquitto.pid"
    if setup == "garbage":
        pid_file.write_text("not-a-pid\n")
    elif setup == "dead":
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)  # reaped: the pid names no process now
        pid_file.write_text(f"{pid}\n")
    reloader = BrokerReloader(pid_file=pid_file)
    assert reloader.reload() is False
    assert reloader.last_error is not None and expected in reloader.last_error
    assert "\n" not in reloader.last_error


def test_failing_reload_command_is_reported(tmp_path: Path) -> None:
    reloader = BrokerReloader(command=f"{sys.executable} -c \"import sys; sys.exit('no broker here')\"")
    assert reloader.reload() is False
    assert reloader.last_error is not None and "exited with 1" in reloader.last_error
    assert "no broker here" in reloader.last_error
    missing = BrokerReloader(command="/nonexistent/reload-broker")
    assert missing.reload() is False and "reload-broker" in (missing.last_error or "")


def test_reload_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="need TINYFLEET_MQTT_PASSWORD_FILE"):
        settings_from_env({"TINYFLEET_MQTT_BROKER_PID_FILE": "/run/mosquitto.pid"})
    with pytest.raises(ConfigError, match="cannot be parsed"):
        settings_from_env(
            {"TINYFLEET_MQTT_PASSWORD_FILE": "/tmp/p", "TINYFLEET_MQTT_RELOAD_COMMAND": 'systemctl "reload'}
        )
    s = settings_from_env(
        {
            "TINYFLEET_MQTT_PASSWORD_FILE": "/tmp/p",
            "TINYFLEET_MQTT_RELOAD_COMMAND": "systemctl reload mosquitto",
        }
    )
    assert s.mqtt_reload_command == "systemctl reload mosquitto"


def test_server_run_broker_starts_a_managed_mosquitto(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with ExitStack() as stack:
        managed = _managed_broker(stack, settings, "127.0.0.1", 0)
        pid_file = managed.mqtt_broker_pid_file
        assert pid_file is not None and pid_file.read_text().strip().isdigit()
        assert managed.mqtt_url is not None and managed.mqtt_url.startswith(f"mqtt://{GATEWAY}:")
        assert managed.mqtt_password_file == tmp_path / "data" / "mosquitto.passwd"
        port = int(managed.mqtt_url.rsplit(":", 1)[1])
        password = managed.mqtt_url.split(":")[2].split("@")[0]
        assert connects(port, GATEWAY, password)  # the gateway's account exists from the start
        pid = int(pid_file.read_text())
    assert not pid_file.exists()
    with pytest.raises(ProcessLookupError):  # the broker ended with the server
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)


def test_server_run_broker_refuses_a_second_broker_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, mqtt_url="mqtt://127.0.0.1:1883")
    with ExitStack() as stack, pytest.raises(ConfigError, match="not both"):
        _managed_broker(stack, settings, "127.0.0.1", 0)
