"""Tell Mosquitto to re-read the password file the server writes.

Mosquitto reads `password_file` only at start and on SIGHUP, so a device provisioned while the broker runs
is refused until someone reloads it. The server does it right after each write, in one of two ways:
SIGHUP to the pid in a pid file (a broker the server started, or mosquitto's own `pid_file`), and/or a
command run without a shell (`systemctl reload mosquitto`, `docker kill -s HUP broker`, ...).
A failed reload is logged and kept in `last_error`; it never fails the API call that changed the file.

Reloads run on a small thread, at most one per `settle_seconds`: provisioning a fleet one device at a time
becomes a few reloads, not one per device. The spacing also matters for correctness: mosquitto keeps a
single "reload pending" flag that it clears after reloading, so a SIGHUP that lands while it is still
reading the file is lost and the newest device would stay refused.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

RELOAD_COMMAND_TIMEOUT = 30.0
SETTLE_SECONDS = 0.3


class BrokerReloader:
    def __init__(
        self, pid_file: Path | None = None, command: str | None = None, settle_seconds: float = SETTLE_SECONDS
    ) -> None:
        self.pid_file = pid_file
        self.command = shlex.split(command) if command else None
        self.settle_seconds = settle_seconds
        self.reloads = 0
        self.last_error: str | None = None
        self._wake = threading.Condition()
        self._pending = False
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """The password file changed: reload soon (on the reloader's thread, coalescing bursts)."""
        if not self.configured:
            return
        with self._wake:
            self._pending = True
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._loop, name="tinyfleet-broker-reload", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no reload is pending or running (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def stop(self) -> None:
        """Run a pending reload, then end the thread."""
        self.wait_idle()
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if not self._pending:
                    return
                self._pending = False
                self._busy = True
            try:
                self.reload()
                time.sleep(self.settle_seconds)  # requests meanwhile become one reload after this pause
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()

    @property
    def configured(self) -> bool:
        return self.pid_file is not None or self.command is not None

    def reload(self) -> bool:
        """Ask the broker to reload; True when every configured way succeeded."""
        ok = True
        if self.pid_file is not None:
            ok = self._signal(self.pid_file) and ok
        if self.command is not None:
            ok = self._run(self.command) and ok
        if ok and self.configured:
            self.reloads += 1
            self.last_error = None
        return ok

    def _failed(self, message: str) -> bool:
        self.last_error = message
        log.warning("could not reload the MQTT broker: %s", message)
        return False

    def _signal(self, pid_file: Path) -> bool:
        try:
            text = pid_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            return self._failed(f"cannot read pid file {pid_file}: {getattr(exc, 'strerror', None) or exc}")
        if not text.isdigit() or int(text) <= 1:
            return self._failed(f"pid file {pid_file} does not hold a process id: {text[:40]!r}")
        try:
            os.kill(int(text), signal.SIGHUP)
        except ProcessLookupError:
            return self._failed(f"no process {text} (from {pid_file}); is the broker running?")
        except PermissionError:
            return self._failed(
                f"not allowed to signal process {text} (from {pid_file}); use TINYFLEET_MQTT_RELOAD_COMMAND"
            )
        return True

    def _run(self, argv: list[str]) -> bool:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=RELOAD_COMMAND_TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return self._failed(f"reload command {argv[0]!r} failed: {exc}")
        if done.returncode != 0:
            output = " ".join((done.stderr or done.stdout).split())[-300:]
            return self._failed(f"reload command exited with {done.returncode}: {output}")
        return True
