"""Bring your own broker (deploy/README.md): a Mosquitto running as its own system user, as Debian's does,
must be able to read the password file the server writes; when it cannot, /readyz says so."""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mqtt_probe import connects
from tinyfleet.server.config import Settings
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.services.credentials import FileAccess, hash_password, write_password_file
from tinyfleet.server.stack import Stack

BROKER_USER = "mosquitto"  # the Debian package's user; a system user the broker drops privileges to
GATEWAY = "tinyfleet-server"
pytestmark = pytest.mark.slow


@pytest.fixture
def shared_dir(dev_broker) -> Iterator[Path]:
    """A directory the broker's user can enter (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start mosquitto as another user")
    try:
        pwd.getpwnam(BROKER_USER)
    except KeyError:
        pytest.skip(f"no system user {BROKER_USER!r} (apt-get install mosquitto creates it)")
    folder = Path(tempfile.mkdtemp(prefix="tinyfleet-byob-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _start(dev_broker, folder: Path) -> tuple[DevBroker, Path, Path]:
    """The broker as its own user, with a password file holding the gateway's account it can read."""
    passwd, pid_file = folder / "mosquitto.passwd", folder / "mosquitto.pid"
    write_password_file(
        passwd, [(GATEWAY, hash_password("gw-secret"))], FileAccess(gid=grp.getgrnam(BROKER_USER).gr_gid)
    )
    broker = dev_broker(password_file=passwd, admin_users=[GATEWAY], run_as=BROKER_USER, workdir=folder / "b")
    pid_file.write_text(f"{broker.pid}\n")
    return broker, passwd, pid_file


def _stack(folder: Path, broker: DevBroker, passwd: Path, pid_file: Path, **overrides: object) -> Stack:
    settings = Settings(
        database_url=f"sqlite:///{folder / 'tinyfleet.db'}",
        data_dir=folder / "server",
        mqtt_url=f"mqtt://{GATEWAY}:gw-secret@127.0.0.1:{broker.port}",
        mqtt_password_file=passwd,
        mqtt_broker_pid_file=pid_file,
        **overrides,  # type: ignore[arg-type]
    )
    stack = Stack(settings)
    # The server rewrites the file and reloads the broker at start; connect only after that reload.
    assert stack.ctx.broker_reloader.wait_idle()
    time.sleep(0.3)
    return stack  # started by `with`


def _wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_password_file_readable_by_the_brokers_group(shared_dir: Path, dev_broker) -> None:
    broker, passwd, pid_file = _start(dev_broker, shared_dir)
    with _stack(shared_dir, broker, passwd, pid_file, mqtt_password_file_group=BROKER_USER) as st:
        info = passwd.stat()
        assert stat.S_IMODE(info.st_mode) == 0o640 and info.st_gid == grp.getgrnam(BROKER_USER).gr_gid
        assert _wait(st.ctx.gateway.connected.is_set), broker.log_text()
        with st.client() as c:
            creds = c.post("/api/devices", json={"id": "dev-a", "hardware_class": 1}).json()["mqtt"]
            assert stat.S_IMODE(passwd.stat().st_mode) == 0o640  # the append keeps it readable
            assert connects(broker.port, "dev-a", creds["password"]), broker.log_text()
            assert c.get("/readyz").status_code == 200
        assert "Unable to open pwfile" not in broker.log_text()


def test_a_broker_that_cannot_read_the_file_is_reported(shared_dir: Path, dev_broker, caplog) -> None:
    broker, passwd, pid_file = _start(dev_broker, shared_dir)
    caplog.set_level(logging.ERROR, logger="tinyfleet.server.context")
    # No group or owner configured: the server writes 0600 root, the reloaded broker cannot read it.
    with _stack(shared_dir, broker, passwd, pid_file) as st:
        assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
        assert _wait(lambda: st.ctx.broker_refusal is not None), broker.log_text()
        time.sleep(2.5)  # the gateway retries meanwhile: the refusal is still logged only once
        with st.client() as c:
            r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["failing"] == ["mqtt"]
        detail = r.json()["checks"]["mqtt"]["detail"]
        assert detail.startswith("broker refused the gateway's credentials: Not authorized"), detail
        assert "TINYFLEET_MQTT_PASSWORD_FILE_GROUP" in detail
        refusals = [r for r in caplog.records if "MQTT connection refused" in r.getMessage()]
        assert len(refusals) == 1
        assert "Unable to open pwfile" in broker.log_text()
