"""Nothing acknowledged is lost (issue 11 items 4 and 9), with real processes: a private PostgreSQL
cluster stopped for 25 s while scripted devices send telemetry and finish their actions, and a server
restart while devices keep sending. Every report is stored exactly once (counted by seq) and no action
fails or times out because of the outage."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support.gateway_setup import setup_hello, wait_for
from tests.support.ports import free_port
from tests.support.server_scripted import MqttLink, ScriptedDevice
from tinyfleet.server.stack import run_stack
from tinyfleet.signing.keys import TrustStore

OUTAGE_S = 25
ACTION_TIMEOUT_S = 5  # far shorter than the outage: a status held by it must not count as silence


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb in a temporary directory, run as the postgres user), so
    that the test can stop and start it without touching the shared server."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins or shutil.which("runuser") is None or os.geteuid() != 0:
            pytest.skip("needs PostgreSQL server binaries and root (to run them as the postgres user)")
        self.bin = Path(bins[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="tinyfleet-pg-"))
        shutil.chown(self.dir, "postgres")
        self.port = free_port()
        self._pg("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        cmd = ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._pg(
            "pg_ctl", "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w", "start"
        )

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def models(shared_models: Path) -> Path:
    return shared_models


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    pg.start()
    yield pg
    pg.close()


class Device:
    """A scripted device on its own MQTT connection that sends telemetry with boot and seq (PROTOCOL
    4.5) for the model it last reported, and can hold its status messages back (finished offline)."""

    def __init__(self, link: MqttLink, scripted_factory: Any) -> None:
        self.link = link
        self.holding = False
        self.held: list[tuple[str, bytes]] = []
        self.model: str | None = None
        self.seq = 0
        self.dev: ScriptedDevice = scripted_factory(self.send)

    def send(self, topic: str, payload: bytes) -> list[Any]:
        if self.holding and not topic.endswith("/chunk/req"):
            self.held.append((topic, payload))
            return []
        if topic.endswith("/reported"):
            r = json.loads(payload)
            self.model = r["slots"][r["active_slot"]]["model_sha256"]
        return self.link.send(topic, payload)

    def release(self) -> None:
        self.holding = False
        held, self.held = self.held, []
        for topic, payload in held:
            self.send(topic, payload)

    def telemetry(self) -> None:
        report = {
            "ts": time.time(),
            "model_sha256": self.model,
            "inference_count": 10,
            "latency_us_mean": 900.0,
            "class_histogram": [6, 4],
            "confidence_mean": 0.7,
            "errors": 0,
            "arena_bytes": 2048,
            "boot": 1,
            "seq": self.seq,
        }
        self.seq += 1
        self.link.send(f"tf/{self.link.device_id}/telemetry", json.dumps({"reports": [report]}).encode())


def _devices(stack, mosquitto, v1: dict, ids: list[str]) -> list[Device]:
    with stack.client() as c:
        store = TrustStore(bytes.fromhex(k["public_key"]) for k in c.get("/api/trust-store").json())
    sha = v1["packages"][0]["model_sha256"]
    out = []
    for device_id in ids:
        link = MqttLink(mosquitto.host, mosquitto.port, device_id)
        assert link.connected.wait(5)
        d = Device(
            link, lambda send, i=device_id: ScriptedDevice(i, 1, send, store, slots=[sha, None], active=0)
        )
        d.dev.come_online()
        out.append(d)
    return out


def _stored_seqs(url: str) -> dict[str, list[int]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT device_id, seq FROM telemetry WHERE seq IS NOT NULL"))
            got: dict[str, list[int]] = {}
            for device_id, seq in rows:
                got.setdefault(device_id, []).append(seq)
            return {k: sorted(v) for k, v in got.items()}
    finally:
        engine.dispose()


@pytest.mark.slow
def test_database_outage_loses_no_message_and_times_out_no_action(private_pg, mosquitto, models, tmp_path):
    with run_stack(
        mosquitto.url,
        database_url=private_pg.url,
        data_dir=tmp_path / "server",
        tick_seconds=0.1,
        action_timeout_seconds=ACTION_TIMEOUT_S,
    ) as st:
        wait_for(lambda: st.ctx.gateway.connected.is_set(), what="gateway connection")
        v1, v2, devices = setup_hello(st, models, 3)
        fleet = _devices(st, mosquitto, v1, [d["device"]["id"] for d in devices])
        with st.client() as c:
            wait_for(lambda: len(c.get("/api/devices", params={"online": True}).json()) == 3, what="online")
            for _ in range(3):
                for d in fleet:
                    d.telemetry()
            body = {"name": "outage", "model_version_id": v2["id"], "start": True, "max_concurrent": 3}
            rollout = c.post("/api/rollouts", json=body).json()
            wait_for(lambda: all(d.link.desired for d in fleet), what="desired states")
            # Each device downloads now, and finishes (status, reported state) while the database is down.
            for d in fleet:
                d.holding = True
                d.dev.follow(d.link.desired)
            private_pg.stop()
            end = time.monotonic() + OUTAGE_S
            released = False
            while time.monotonic() < end:
                for d in fleet:
                    d.telemetry()
                if not released and time.monotonic() > end - OUTAGE_S + 5:
                    for d in fleet:
                        d.release()
                    released = True
                time.sleep(1.0)
            private_pg.start()
            for _ in range(3):
                for d in fleet:
                    d.telemetry()
            sent = {d.link.device_id: list(range(d.seq)) for d in fleet}
            wait_for(lambda: _stored_seqs(private_pg.url) == sent, timeout=60, what="every report stored")
            wait_for(
                lambda: c.get(f"/api/rollouts/{rollout['id']}").json()["state"] == "completed",
                timeout=30,
                what="rollout completed",
            )
            actions = c.get(f"/api/rollouts/{rollout['id']}/actions").json()
            assert {a["state"] for a in actions} == {"confirmed"}, actions
            stats = c.get("/api/gateway/stats").json()
        assert stats["events"]["db_retries"] > 0
        assert stats["rejected"] == {} and stats["malformed"] == {}
        for d in fleet:
            d.link.close()


@pytest.mark.slow
def test_telemetry_sent_while_the_server_restarts_is_kept(mosquitto, models, tmp_path):
    url = f"sqlite:///{tmp_path / 'tinyfleet.db'}"
    kwargs: dict[str, Any] = {"database_url": url, "data_dir": tmp_path / "server", "tick_seconds": 0.1}
    with run_stack(mosquitto.url, **kwargs) as st:
        wait_for(lambda: st.ctx.gateway.connected.is_set(), what="gateway connection")
        v1, _v2, devices = setup_hello(st, models, 2)
        fleet = _devices(st, mosquitto, v1, [d["device"]["id"] for d in devices])
        for _ in range(3):
            for d in fleet:
                d.telemetry()
        wait_for(lambda: sum(map(len, _stored_seqs(url).values())) == 6, what="first reports")
    # The server is down: the broker keeps these for the server's persistent session.
    for _ in range(5):
        for d in fleet:
            d.telemetry()
    with run_stack(mosquitto.url, **kwargs) as st:
        for _ in range(2):
            for d in fleet:
                d.telemetry()
        sent = {d.link.device_id: list(range(d.seq)) for d in fleet}
        wait_for(lambda: _stored_seqs(url) == sent, timeout=30, what="every report stored once")
    for d in fleet:
        d.link.close()
