"""A throwaway Mosquitto for the demo, tests and benchmarks: free port, temporary config, clean shutdown.

The broker is a real `mosquitto` process (never an in-process fake), so tests exercise the same QoS 1,
retained-message and last-will behaviour as a deployment. With `users` it also enforces the per-device
ACL of docs/PROTOCOL.md section 4: a device (username = its id) may only touch `tf/{id}/...`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    """The broker could not be started or stopped cleanly."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary, or a BrokerError that says how to install it."""
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise BrokerError("mosquitto not found; install it with: apt-get install mosquitto")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if another process takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _hashed_password_file(path: Path, users: Mapping[str, str]) -> None:
    """Write `user:password` lines and let mosquitto_passwd hash them in place (its own format)."""
    for name, password in users.items():
        if not name or ":" in name or "\n" in name or "\n" in password:
            raise BrokerError(f"invalid MQTT user name or password for {name!r}")
    path.write_text("".join(f"{u}:{p}\n" for u, p in users.items()), encoding="utf-8")
    passwd = shutil.which("mosquitto_passwd")
    if passwd is None:
        raise BrokerError("mosquitto_passwd not found; it ships with the mosquitto package")
    done = subprocess.run([passwd, "-U", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(f"mosquitto_passwd failed: {done.stderr.strip() or done.stdout.strip()}")


def acl_text(admin_users: list[str]) -> str:
    """ACL: admins (the server) see everything; every other user only its own `tf/{username}/` tree."""
    lines = []
    for admin in admin_users:
        lines += [f"user {admin}", "topic readwrite #", ""]
    lines += ["pattern readwrite tf/%u/#", ""]
    return "\n".join(lines)


class Broker:
    """Run `mosquitto` on a free local port until stop() (or the end of a `with` block).

    users: when given, anonymous clients are refused, each user needs its password, and the ACL above
    applies; admin_users name the accounts allowed on every topic. password_file: instead of users, a
    mosquitto password file kept by someone else (the server writes device credentials there); call
    reload() after it changes. Without either the broker is open (anonymous, no ACL).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        admin_users: list[str] | None = None,
        password_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or 0
        self._requested_port = port
        self._users = dict(users) if users else None
        self._admins = list(admin_users or [])
        self._password_file = password_file
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        if password_file is not None and users is not None:
            raise BrokerError("give either users or password_file, not both")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return Path(self._dir.name) / "mosquitto.log" if self._dir else None

    def _config(self, workdir: Path) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "max_connections -1",
            # A rollout queues a burst of desired states and chunks per client; keep them all.
            "max_queued_messages 10000",
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # Started as root, mosquitto would switch to its own user and could not read the 0600 files
            # the server writes; this broker only listens on a loopback port for one demo or test run.
            lines.append("user root")
        if self._users is None and self._password_file is None:
            lines.append("allow_anonymous true")
        else:
            if self._password_file is not None:
                passwords = self._password_file
                if not passwords.exists():  # mosquitto refuses to start without the file
                    passwords.touch(mode=0o600)
            else:
                passwords = workdir / "passwords"
                assert self._users is not None
                _hashed_password_file(passwords, self._users)
            acl = workdir / "acl"
            acl.write_text(acl_text(self._admins), encoding="utf-8")
            lines += ["allow_anonymous false", f"password_file {passwords}", f"acl_file {acl}"]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> Broker:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # never leave a half-started broker or its temporary directory behind
            raise

    def _start(self, timeout: float) -> Broker:
        binary = find_mosquitto()
        self._dir = tempfile.TemporaryDirectory(prefix="tinyfleet-mosquitto-")
        workdir = Path(self._dir.name)
        attempts = 1 if self._requested_port else 5
        last_error = ""
        for _ in range(attempts):
            if not self._requested_port:
                self.port = free_port(self.host)
            conf = workdir / "mosquitto.conf"
            conf.write_text(self._config(workdir), encoding="utf-8")
            with open(workdir / "mosquitto.log", "ab") as log:
                self._proc = subprocess.Popen(
                    [binary, "-c", str(conf)],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,  # Ctrl-C in the demo must not kill the broker before we stop it
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    break
                if _port_open(self.host, self.port):
                    return self
                time.sleep(0.02)
            last_error = self._failure_text()
            self._kill()
        self.stop()
        raise BrokerError(f"mosquitto did not start on {self.host}: {last_error or 'timed out'}")

    def _failure_text(self) -> str:
        text = ""
        log = self.log_path
        if log is not None and log.exists():
            text += log.read_text(errors="replace")
        return " ".join(text.split())[-400:]

    def reload(self) -> None:
        """Re-read the password file and ACL (SIGHUP), e.g. after adding users with set_users()."""
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError("broker is not running")
        self._proc.send_signal(signal.SIGHUP)

    def set_users(self, users: Mapping[str, str]) -> None:
        """Replace the password file (the broker must have been started with users) and reload."""
        if self._users is None or self._dir is None:
            raise BrokerError("this broker was started without authentication")
        self._users = dict(users)
        _hashed_password_file(Path(self._dir.name) / "passwords", self._users)
        self.reload()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop(self) -> None:
        self._kill()
        if self._dir is not None:
            with contextlib.suppress(OSError):
                self._dir.cleanup()
            self._dir = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def __enter__(self) -> Broker:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # a forgotten broker must not outlive the interpreter
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(Exception):
                os.kill(self._proc.pid, signal.SIGTERM)
