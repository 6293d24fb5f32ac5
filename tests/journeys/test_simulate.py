"""User journey: `tinyfleet simulate` in its own process against a running server whose broker it did
not start. Nobody reloads the broker by hand: the server does (pid file). SIGTERM (kill, timeout,
systemd) stops the fleet like Ctrl-C: before the fix its worker processes outlived the command."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.paths import REPO
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.server.stack import run_stack

pytestmark = pytest.mark.timeout(180)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _gone(pid: int, deadline_s: float = 20.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True  # exited, waiting for init to reap it
        time.sleep(0.1)
    return False


def test_simulate_against_a_running_server_then_sigterm(tmp_path: Path) -> None:
    passwd = tmp_path / "mosquitto.passwd"
    write_password_file(passwd, [("tinyfleet-server", hash_password("gateway-secret"))])
    with DevBroker(password_file=passwd, admin_users=["tinyfleet-server"]) as broker:
        pid_file = tmp_path / "mosquitto.pid"
        pid_file.write_text(f"{broker.pid}\n")
        url = f"mqtt://tinyfleet-server:gateway-secret@127.0.0.1:{broker.port}"
        with run_stack(
            url, data_dir=tmp_path / "server", mqtt_password_file=passwd, mqtt_broker_pid_file=pid_file
        ) as st:
            cmd = [sys.executable, "-m", "tinyfleet.cli", "simulate", "--devices", "3", "--processes", "1"]
            cmd += ["--server", st.url, "--token", st.token, "--prefix", "journey"]
            proc = subprocess.Popen(
                cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
            )
            workers: list[int] = []
            try:
                online: list[str] = []
                deadline = time.monotonic() + 60
                with st.client() as c:
                    while time.monotonic() < deadline and len(online) < 3 and proc.poll() is None:
                        online = [d["id"] for d in c.get("/api/devices", params={"online": True}).json()]
                        time.sleep(0.3)
                assert sorted(online) == ["journey-00000", "journey-00001", "journey-00002"]
                workers = _children(proc.pid)
                assert workers, "the fleet runs in worker processes"
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=60)
                text = out.decode(errors="replace")
                assert proc.returncode == 0, text
                assert "Not authorized" not in text and "Traceback" not in text
                assert "stopping the fleet" in text
                assert all(_gone(w) for w in workers), "fleet workers outlived `tinyfleet simulate`"
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                for worker in workers:  # never leave a fleet behind, even when the test fails
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker, signal.SIGKILL)
                if proc.stdout is not None:
                    proc.stdout.close()
