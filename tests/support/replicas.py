"""Several control-plane replicas as real processes (`tinyfleet server run`) on one PostgreSQL and one
private Mosquitto, and a private PostgreSQL cluster a test may restart (never the machine's service)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.paths import REPO
from tests.support.ports import free_port

TOKEN = "replica-test-token-0123456789abcdef"


@dataclass
class ReplicaProcess:
    """One `tinyfleet server run` with its own name (its MQTT user and client id) and API port."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "tinyfleet.cli", "server", "run", "--port", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown code runs, the broker and PostgreSQL see the sockets drop."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def health(self) -> dict[str, Any] | None:
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            r = httpx.get(f"{self.url}/healthz", timeout=5)
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = r.json() if r.status_code == 200 else {}
        return body or None

    def is_leader(self) -> bool:
        h = self.health()
        return bool(h and h.get("leader"))

    def metric(self, name: str, label: str) -> float:
        """A counter's value for one label from this replica's /metrics (0 if absent)."""
        r = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        r.raise_for_status()
        total = 0.0
        for line in r.text.splitlines():
            if line.startswith(f"{name}_total{{") and label in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


def replica_env(
    name: str,
    *,
    database_url: str,
    mqtt_url: str,
    data_dir: Path,
    password_file: Path,
    signing_key: Path,
    trusted: Path,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYFLEET_")}
    env.update(
        TINYFLEET_REPLICA_NAME=name,
        TINYFLEET_DATABASE_URL=database_url,
        TINYFLEET_MQTT_URL=mqtt_url,
        TINYFLEET_DATA_DIR=str(data_dir),
        TINYFLEET_MQTT_PASSWORD_FILE=str(password_file),
        TINYFLEET_SIGNING_KEY=str(signing_key),  # every replica signs with the same server key
        TINYFLEET_TRUSTED_KEYS=str(trusted),
        TINYFLEET_API_TOKEN=TOKEN,
        TINYFLEET_TICK_SECONDS="0.2",
        TINYFLEET_LEADER_CHECK_SECONDS="0.5",
    )
    return env


# ----- a private PostgreSQL cluster ----------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """initdb + pg_ctl in a temporary directory on a port of its own (trust auth, user postgres). As root
    the server runs as the `postgres` system user (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            pytest.skip("PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb) are not installed")
        self.bindir = bindir
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            runuser = shutil.which("runuser")
            if runuser is None:
                pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
            self.as_user = [runuser, "-u", "postgres", "--"]
        # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
        self.dir = Path(tempfile.mkdtemp(prefix="tinyfleet-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.as_user, str(self.bindir / tool), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def close(self) -> None:
        with contextlib.suppress(AssertionError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(predicate: Any, timeout: float, what: str, period: float = 0.1) -> float:
    """Seconds it took for predicate() to hold (AssertionError after timeout)."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if predicate():
            return time.monotonic() - began
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
