"""Two control-plane replicas (real `tinyfleet server run` processes) on one PostgreSQL and a private
Mosquitto, with simulated devices on the real C runtime (issue 16, part A).

(a) The leader is SIGKILLed mid-rollout: the follower takes over within seconds (measured), the killed
    replica is restarted under its name (it resumes its broker session: docs/DEPLOY.md "Replicas"), and
    the rollout completes with every device installing once, every action confirmed once, and every
    telemetry report stored exactly once.
(b) A private PostgreSQL cluster is stopped mid-rollout and started again: both replicas recover and
    the rollout completes, again with nothing done twice and no telemetry lost.
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.e2e_harness import (
    E2E,
    demo_releases,
    freeze_telemetry,
    require_tools,
    stored_reports,
    upload_good_releases,
    wait_for,
)
from tests.support.ports import free_port
from tests.support.replicas import (
    TOKEN,
    PrivatePostgres,
    ReplicaProcess,
    replica_env,
    wait_until,
)
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.signing.keys import generate_private_key, save_keypair
from tinyfleet.sim.fleet import LocalFleet
from tinyfleet.sim.profiles import get_profile
from tinyfleet.sim.server_api import ServerApi

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

DEVICES = 24
NAMES = ("tinyfleet-replica-a", "tinyfleet-replica-b")  # MQTT users = client ids (use_username_as_clientid)


@dataclasses.dataclass
class Cluster:
    env: E2E
    replicas: list[ReplicaProcess]
    database_url: str

    def leader(self) -> ReplicaProcess:
        leaders = [r for r in self.replicas if r.is_leader()]
        assert len(leaders) == 1, f"expected one leader, got {[r.name for r in leaders]}"
        return leaders[0]

    def use_api_of(self, replica: ReplicaProcess) -> None:
        self.env.api.close()
        self.env.api = ServerApi(replica.url, TOKEN)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        url = self.database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, connect_timeout=10) as conn:
            return list(conn.execute(query, args).fetchall())


def _machine_pg_database() -> Iterator[str]:
    name = f"tfreplicas_{uuid.uuid4().hex[:10]}"
    dsn = "host=127.0.0.1 port=5432 user=postgres dbname={}"
    try:
        with psycopg.connect(dsn.format("test"), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (user postgres, db test) is not reachable: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(dsn.format("test"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cluster(stack: ExitStack, workdir: Path, database_url: str) -> Cluster:
    require_tools()
    key, releases = demo_releases()
    release_pub = workdir / "release.pub"
    save_keypair(workdir / "release", key)
    save_keypair(workdir / "server-key", generate_private_key())
    password_file = workdir / "mosquitto.passwd"
    passwords = {name: secrets.token_urlsafe(12) for name in NAMES}
    write_password_file(password_file, [(n, hash_password(p)) for n, p in passwords.items()])
    broker = stack.enter_context(DevBroker(password_file=password_file, admin_users=list(NAMES)))
    replicas = []
    for name in NAMES:
        mqtt_url = f"mqtt://{name}:{passwords[name]}@{broker.host}:{broker.port}"
        env = replica_env(
            name,
            database_url=database_url,
            mqtt_url=mqtt_url,
            data_dir=workdir / name,
            password_file=password_file,
            signing_key=workdir / "server-key.pem",
            trusted=release_pub,
        )
        replica = ReplicaProcess(name, free_port(), env, workdir / f"{name}.log")
        stack.callback(replica.kill)
        replica.start()
        wait_until(lambda r=replica: r.health() is not None, 120, f"replica {name} to serve")  # type: ignore[misc]
        replicas.append(replica)
    api = ServerApi(replicas[0].url, TOKEN)
    stack.callback(lambda: e2e.api.close())
    e2e = E2E(workdir, broker, api, key, release_pub, releases, [], "", password_file, stack)
    e2e.version_ids = upload_good_releases(api, releases)
    return Cluster(e2e, replicas, database_url)


def _rollout_through(cluster: Cluster, fault: Callable[[], None]) -> None:
    env = cluster.env
    # Reports every second, so that devices are sending while the fault happens.
    profile = dataclasses.replace(get_profile("lan"), telemetry_period_s=1.0)
    specs, provisioned = env.provision(DEVICES, "rep", profile)
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet)
    try:
        rollout = env.rollout(
            "rep-v1", 0, "rep", waves=[{"count": 6}, {"count": 6}, {"percent": 100}], soak_seconds=3
        )
        wait_for(
            lambda: any(a["state"] == "confirmed" for a in env.api.rollout_actions(rollout["id"])),
            120,
            "the first wave to start confirming",
        )
        confirmed = sum(a["state"] == "confirmed" for a in env.api.rollout_actions(rollout["id"]))
        assert confirmed < DEVICES  # the fault lands mid-rollout: later waves wait behind the soak
        fault()
        done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=240)
        assert done["state"] == "completed", done["state_reason"]
        # Nothing done twice: one deploy action per device, each confirmed, and each device installed once.
        rows = cluster.sql(
            "SELECT device_id, purpose, state FROM device_actions WHERE rollout_id = %s", rollout["id"]
        )
        assert sorted(r[0] for r in rows) == sorted(s.device_id for s in specs)
        assert {(r[1], r[2]) for r in rows} == {("deploy", "confirmed")}
        totals = fleet.snapshot().totals
        assert totals["installs_confirmed"] == DEVICES, totals
        assert totals["installs_failed"] == 0
        assert set(env.active_models(specs).values()) == {env.releases[0].model_sha256}

        # Telemetry: every report sent (the devices' seq) stored once, whichever replica took it.
        sent = freeze_telemetry(fleet)
        assert sum(sent.values()) > 0
        stored: dict[str, int] = {}

        def all_stored() -> bool:
            stored.update(stored_reports(env.api, list(sent)))
            return stored == sent

        try:
            wait_for(all_stored, 90, "every telemetry report to be stored")
        except AssertionError:
            diff = {d: (sent[d], stored.get(d)) for d in sent if stored.get(d) != sent[d]}
            raise AssertionError(f"telemetry sent vs stored differs: {diff}") from None
        # Both replicas handled device messages: the shared subscription spread them.
        for replica in cluster.replicas:
            assert replica.metric("tinyfleet_mqtt_messages_received", 'kind="status"') > 0, replica.name
    finally:
        fleet.stop()
        env.fleets.remove(fleet)


def test_leader_sigkill_mid_rollout(tmp_path: Path) -> None:
    with ExitStack() as stack:
        gen = _machine_pg_database()
        database_url = next(gen)
        stack.callback(lambda: next(gen, None))
        cluster = _cluster(stack, tmp_path, database_url)
        takeover: list[float] = []

        def kill_leader() -> None:
            leader = cluster.leader()
            follower = next(r for r in cluster.replicas if r is not leader)
            cluster.use_api_of(follower)
            leader.kill()
            takeover.append(wait_until(follower.is_leader, 60, "the follower to take over"))
            # Restarted under the same name: it resumes its MQTT session (messages queued for it) and
            # its advisory-lock attempt fails, so it follows.
            leader.start()
            wait_until(lambda: leader.health() is not None, 120, "the killed replica to serve again")
            assert not leader.is_leader() and follower.is_leader()

        _rollout_through(cluster, kill_leader)
        print(f"leader takeover after SIGKILL: {takeover[0]:.2f} s (seen through /healthz, polled 10/s)")


def test_postgres_restart_mid_rollout(tmp_path: Path) -> None:
    with ExitStack() as stack:
        pg = PrivatePostgres()
        stack.callback(pg.close)
        pg.start()
        pg.create_database("tinyfleet")
        cluster = _cluster(stack, tmp_path, pg.url("tinyfleet"))
        before = cluster.leader()

        def restart_postgres() -> None:
            pg.stop("immediate")  # as a crash: every backend gone, the leader's lock with them
            wait_until(lambda: not before.is_leader(), 30, "the leader to step down")
            pg.start()
            wait_until(lambda: any(r.is_leader() for r in cluster.replicas), 60, "a leader again")

        _rollout_through(cluster, restart_postgres)
        cluster.leader()  # exactly one
