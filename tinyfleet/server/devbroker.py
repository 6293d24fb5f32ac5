"""A throwaway Mosquitto for the demo, tests and benchmarks: free port, temporary config, clean shutdown.

The broker is a real `mosquitto` process (never an in-process fake), so tests exercise the same QoS 1,
retained-message and last-will behaviour as a deployment. With `users` or a password file it also
enforces the per-device ACL of docs/PROTOCOL.md section 4 (rendered by broker_acl, the same text as
deploy/mosquitto.acl) and `use_username_as_clientid`, like deploy/mosquitto.conf.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from tinyfleet.server.broker_acl import render_acl

PR_SET_PDEATHSIG = 1  # linux/prctl.h
MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    """The broker could not be started or stopped cleanly."""


@dataclass(frozen=True)
class BrokerTls:
    """A TLS listener that admits only clients with a certificate from `cafile` (the fleet CA), not
    listed in `crlfile`, and takes the certificate's CN as the username (device id, or the gateway's
    service user), so the generated ACL applies as with passwords. The broker re-reads the CRL on SIGHUP
    (reload()); connections already open stay open."""

    cafile: Path
    certfile: Path
    keyfile: Path
    crlfile: Path | None = None


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


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on host:port now (a bind test, as mosquitto's own bind would do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def listens_on(pid: int, port: int) -> bool | None:
    """Whether process pid holds a socket listening on TCP port (Linux /proc); None where unknowable."""
    fd_dir = Path("/proc") / str(pid) / "fd"
    if not Path("/proc/net/tcp").exists():
        return None
    inodes = _listening_inodes(port)
    try:
        links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
    except OSError:
        return False
    return any(link.startswith("socket:[") and link[8:-1] in inodes for link in links)


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux for SIGTERM when the starting thread dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: no dlopen in the child

    def set_pdeathsig() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl: the signal would never come
            os._exit(1)

    return set_pdeathsig


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


class DevBroker:
    """Run `mosquitto` on a free local port until stop() (or the end of a `with` block).

    users: when given, anonymous clients are refused, each user needs its password, and the ACL above
    applies; admin_users name the service accounts (the gateway) allowed on the whole `tf/` tree, names
    no device can have (services/ids.py). password_file: instead of users, a
    mosquitto password file kept by someone else (the server writes device credentials there); call
    reload() after it changes. Without either the broker is open (anonymous, no ACL).

    acl_file: an ACL file of the caller's (e.g. deploy/mosquitto.acl) instead of the generated one; it
    needs users or password_file. extra_config: more mosquitto.conf lines, appended last. workdir: keep
    the config and the log there (kept after stop) instead of in a temporary directory. run_as: the
    system user mosquitto switches to when started as root (default: stay root, see _config); files it
    reads must then be readable by that user, as with a packaged broker.

    kill() ends the process abruptly but keeps port, config and log, so restart() brings the same broker
    back on the same port (a broker outage as a client sees it).

    die_with_parent: on Linux, the broker gets SIGTERM when the thread that started it dies, even by
    SIGKILL (prctl PR_SET_PDEATHSIG), so an owner that crashes cannot orphan it. Start it from a thread
    that lives as long as the owner (the main thread). Elsewhere this does nothing; the owner must then
    find and stop a leftover broker itself (`tinyfleet server run --broker` does, docs/DEPLOY.md).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        users: Mapping[str, str] | None = None,
        admin_users: list[str] | None = None,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        extra_config: Sequence[str] = (),
        workdir: Path | None = None,
        run_as: str | None = None,
        die_with_parent: bool = False,
        tls: BrokerTls | None = None,
    ) -> None:
        self.host = host
        self.port = port or 0
        self._requested_port = port
        self._users = dict(users) if users else None
        self._admins = list(admin_users or [])
        self._password_file = password_file
        self._acl_file = acl_file
        self._extra = [extra_config] if isinstance(extra_config, str) else list(extra_config)
        self._workdir = workdir
        self._run_as = run_as
        self._die_with_parent = die_with_parent
        self.tls = tls
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        if password_file is not None and users is not None:
            raise BrokerError("give either users or password_file, not both")
        if acl_file is not None and users is None and password_file is None and tls is None:
            raise BrokerError("an ACL file needs users or a password_file (an open broker has no ACL)")
        try:
            self._acl = render_acl(self._admins)
        except ValueError as exc:
            raise BrokerError(f"admin user: {exc}") from None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def directory(self) -> Path | None:
        """Where the config and the log are (None before start and after stop of a temporary one)."""
        if self._workdir is not None:
            return self._workdir
        return Path(self._dir.name) if self._dir else None

    @property
    def log_path(self) -> Path | None:
        folder = self.directory
        return folder / "mosquitto.log" if folder else None

    def log_text(self) -> str:
        """What mosquitto has logged so far (errors, warnings and notices), or "" before start."""
        log = self.log_path
        return log.read_text(errors="replace") if log is not None and log.exists() else ""

    @property
    def anonymous(self) -> bool:
        """Whether clients may connect without a user name (no users and no password file)."""
        return self._users is None and self._password_file is None and self.tls is None

    def _config(self, workdir: Path) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            "max_connections -1",
            # The server's session gets every device's presence, reported state and telemetry at once when
            # a fleet comes online: 10,000 devices overflowed a 10,000 limit and mosquitto dropped some
            # presence messages (issue 12). The same bound as deploy/mosquitto.conf.
            "max_queued_messages 200000",
            "max_inflight_messages 100",
            # The largest message the protocol has is a telemetry report (256 KiB) plus headers; a
            # device may not make the broker buffer anything bigger (deploy/mosquitto.conf: the same).
            "max_packet_size 266240",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if self.tls is not None:
            lines[1:1] = [
                f"cafile {self.tls.cafile}",
                f"certfile {self.tls.certfile}",
                f"keyfile {self.tls.keyfile}",
                "require_certificate true",
                "use_identity_as_username true",
            ]
            if self.tls.crlfile is not None:
                lines.insert(1, f"crlfile {self.tls.crlfile}")
            # After a TLS 1.3 handshake the broker writes session tickets, then CONNACK: with Nagle on, the
            # CONNACK waits for the client's delayed ACK (~40 ms a login instead of ~5, bench/tls_connect.py).
            lines.append("set_tcp_nodelay true")
        if self._run_as is not None:
            lines.append(f"user {self._run_as}")
        elif os.geteuid() == 0:
            # Started as root, mosquitto would switch to its own user and could not read the 0600 files
            # the server writes; this broker only listens on a loopback port for one demo or test run.
            lines.append("user root")
        if self.anonymous:
            lines.append("allow_anonymous true")
        else:
            passwords: Path | None = None
            if self._password_file is not None:
                passwords = self._password_file
                if not passwords.exists():  # mosquitto refuses to start without the file
                    passwords.touch(mode=0o600)
            elif self._users is not None:
                passwords = workdir / "passwords"
                _hashed_password_file(passwords, self._users)
            acl = self._acl_file
            if acl is None:
                acl = workdir / "acl"
                acl.write_text(self._acl, encoding="utf-8")
            lines.append("allow_anonymous false")
            if passwords is not None:  # a certificate-only listener has none
                lines.append(f"password_file {passwords}")
            lines.append(f"acl_file {acl}")
            # A credential is its own client id and no other, so no device can take over the gateway's
            # (or another device's) session. Not on an open broker: it refuses clients without a username.
            lines.append("use_username_as_clientid true")
        lines += self._extra
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> Self:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # never leave a half-started broker or its temporary directory behind
            raise

    def _start(self, timeout: float) -> Self:
        binary = find_mosquitto()
        if self._workdir is not None:
            self._workdir.mkdir(parents=True, exist_ok=True)
        else:
            self._dir = tempfile.TemporaryDirectory(prefix="tinyfleet-mosquitto-")
        workdir = self.directory
        assert workdir is not None
        attempts = 1 if self._requested_port else 5
        last_error = ""
        if self._requested_port and not port_free(self.host, self.port):
            raise BrokerError(f"port {self.host}:{self.port} is already in use by another process")
        for _ in range(attempts):
            if not self._requested_port:
                self.port = free_port(self.host)
            conf = workdir / "mosquitto.conf"
            conf.write_text(self._config(workdir), encoding="utf-8")
            if self._launch(binary, conf, timeout):
                return self
            last_error = self._failure_text()
            self._kill()
        self.stop()
        raise BrokerError(f"mosquitto did not start on {self.host}: {last_error or 'timed out'}")

    def _launch(self, binary: str, conf: Path, timeout: float) -> bool:
        """Start mosquitto with this config; whether it listens on self.port within the timeout."""
        with open(conf.parent / "mosquitto.log", "ab") as log:
            self._proc = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,  # Ctrl-C in the demo must not kill the broker before we stop it
                preexec_fn=_die_with_parent(os.getpid()) if self._die_with_parent else None,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            # Someone else answering on the port is not a started broker: it must be this process's socket.
            if _port_open(self.host, self.port) and listens_on(self._proc.pid, self.port) is not False:
                return True
            time.sleep(0.02)
        return False

    def _failure_text(self) -> str:
        return " ".join(self.log_text().split())[-400:]

    def reload(self) -> None:
        """Re-read the password file, ACL and CRL (SIGHUP), e.g. after adding users with set_users()."""
        if self._proc is None or self._proc.poll() is not None:
            raise BrokerError("broker is not running")
        self._proc.send_signal(signal.SIGHUP)

    def set_users(self, users: Mapping[str, str]) -> None:
        """Replace the password file (the broker must have been started with users) and reload."""
        folder = self.directory
        if self._users is None or folder is None:
            raise BrokerError("this broker was started without authentication")
        self._users = dict(users)
        _hashed_password_file(folder / "passwords", self._users)
        self.reload()

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; port, config and log stay for restart()."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self, timeout: float = 10.0) -> Self:
        """Start the broker again after kill(), on the same port and with the same config."""
        folder = self.directory
        if folder is None:
            raise BrokerError("broker was never started (or was stopped): use start()")
        if self.running:
            raise BrokerError("broker is still running")
        if not self._launch(find_mosquitto(), folder / "mosquitto.conf", timeout):
            text = self._failure_text()
            self._kill()
            raise BrokerError(f"mosquitto did not restart on {self.host}:{self.port}: {text or 'timed out'}")
        return self

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

    def __enter__(self) -> Self:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # a forgotten broker must not outlive the interpreter
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(Exception):
                os.kill(self._proc.pid, signal.SIGTERM)
