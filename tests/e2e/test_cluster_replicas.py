"""Issue 16 on the 3-node RabbitMQ cluster: two control-plane replicas (real `tinyfleet server run`
processes) on one PostgreSQL, BOTH consuming device traffic from the cluster's quorum queue (competing
consumers), with simulated devices (real C runtime, MQTT 3.1.1, X.509) spread over the nodes.

The leader replica is SIGKILLed mid-rollout and restarted: the other takes over (measured), and the
rollout completes with exactly one confirmed deploy action per device (none acted on twice), every
device online in the server's view (presence handled out of order is ordered by its (boot, seq),
PROTOCOL 4.6), and every telemetry report stored exactly once."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.e2e_harness import demo_releases, freeze_telemetry, stored_reports, upload_good_releases
from tests.support.rabbit_cluster import launcher, rabbit_unavailable
from tests.support.replicas import TOKEN, ReplicaProcess, wait_until
from tinyfleet.server.services.fleet_ca import FleetCA, write_pair
from tinyfleet.signing.keys import generate_private_key, save_keypair
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import FleetConfig, LocalFleet
from tinyfleet.sim.profiles import FleetMix, get_profile
from tinyfleet.sim.server_api import ServerApi

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]

DEVICES = 30
PG = "host=127.0.0.1 port=5432 user=postgres dbname={}"


def _database() -> Iterator[str]:
    """A database of the test's own on the machine's PostgreSQL, dropped afterwards."""
    name = f"tfclusterrep_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG.format("test"), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (user postgres, db test) is not reachable: {exc}")
    try:
        yield name
    finally:
        with psycopg.connect(PG.format("test"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _replica_env(
    name: str, work: Path, db: str, rc: Any, cluster: Any, first: int, password: str
) -> dict[str, str]:
    """Replica `name`, publishing through node `first` and consuming from every node, that one first."""
    nodes = cluster.nodes[first:] + cluster.nodes[:first]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYFLEET_")}
    env.update(
        TINYFLEET_REPLICA_NAME=name,
        TINYFLEET_DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}",
        TINYFLEET_API_TOKEN=TOKEN,
        TINYFLEET_DATA_DIR=str(work / name),
        TINYFLEET_SIGNING_KEY=str(work / "server-key.pem"),
        TINYFLEET_TRUSTED_KEYS=str(work / "release.pub"),
        TINYFLEET_DEVICE_AUTH="cert",
        TINYFLEET_CA_DIR=str(work / "fleet-ca"),
        TINYFLEET_MQTT_URL=f"mqtt://{rc.SERVER_USER}:{password}@127.0.0.1:{nodes[0].mqtt_port}",
        TINYFLEET_MQTT_PROTOCOL="3.1.1",
        TINYFLEET_MQTT_OTHER_NODES=",".join(f"127.0.0.1:{n.mqtt_port}" for n in nodes[1:]),
        TINYFLEET_DEVICE_MQTT_URL=f"mqtts://127.0.0.1:{cluster.nodes[0].mqtts_port}",
        TINYFLEET_AMQP_URL=",".join(
            f"amqp://{rc.SERVER_USER}:{password}@127.0.0.1:{n.amqp_port}/%2F" for n in nodes
        ),
        TINYFLEET_BROKER_AUTH_HTTP="on",
        TINYFLEET_TICK_SECONDS="0.2",
        TINYFLEET_LEADER_CHECK_SECONDS="0.5",
    )
    return env


def _sql(db: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG.format(db), connect_timeout=10) as conn:
        return list(conn.execute(query, args).fetchall())


def _received(replica: ReplicaProcess, kind: str) -> float:
    return replica.metric("tinyfleet_mqtt_messages_received", f'kind="{kind}"')


def test_leader_sigkill_mid_rollout_with_every_replica_consuming(tmp_path: Path) -> None:
    reason = rabbit_unavailable()
    if reason:
        pytest.skip(reason)
    rc = launcher()
    with ExitStack() as stack:
        gen = _database()
        db = next(gen)
        stack.callback(lambda: next(gen, None))
        key, releases = demo_releases()
        save_keypair(tmp_path / "release", key)
        save_keypair(tmp_path / "server-key", generate_private_key())
        ca = FleetCA.open(tmp_path / "fleet-ca", None)
        write_pair(tmp_path / "broker-tls", "broker", ca.issue_broker())
        shutil.copy(ca.cert_path, tmp_path / "broker-tls" / "ca.pem")
        ports = [rc.quiet_port(), rc.quiet_port()]  # not ports RabbitMQ's connections may take
        password = secrets.token_hex(16)
        # The brokers ask replica B about device logins: A, the leader, is the one killed (production puts
        # a load balancer in front of both, docs/DEPLOY.md).
        cluster = rc.create(
            tmp_path / "rabbit", tmp_path / "broker-tls", f"http://127.0.0.1:{ports[1]}", password
        )
        stack.callback(rc.stop, cluster)
        rc.start(cluster)

        replicas = []
        for i, name in enumerate(("tinyfleet-replica-a", "tinyfleet-replica-b")):
            env = _replica_env(name, tmp_path, db, rc, cluster, i, password)
            replica = ReplicaProcess(name, ports[i], env, tmp_path / f"{name}.log")
            stack.callback(replica.kill)
            replica.start()
            wait_until(lambda r=replica: r.health() is not None, 120, f"{name} to serve")
            if i == 0:
                wait_until(replica.is_leader, 60, "the first replica to lead")
            replicas.append(replica)
        a, b = replicas
        assert a.is_leader() and not b.is_leader()

        api = ServerApi(b.url, TOKEN)
        stack.callback(lambda: api.close())
        version_ids = upload_good_releases(api, releases)
        profile = dataclasses.replace(get_profile("lan"), telemetry_period_s=1.0)
        specs, provisioned = provision_fleet(api, DEVICES, FleetMix.single(profile), "crep", "crep", seed=16)
        config = FleetConfig(
            "127.0.0.1",
            0,
            provisioned[0].trusted_keys,
            tuple(specs),
            mqtt_protocol="3.1.1",
            brokers=tuple(("127.0.0.1", n.mqtts_port) for n in cluster.nodes),
            subscribe_qos=0,
        )
        fleet = LocalFleet(config).start()
        stack.callback(fleet.stop)
        assert fleet.wait_online(timeout=120), "simulated devices did not all come online"
        ids = sorted(s.device_id for s in specs)

        def online() -> int:
            return sum(1 for d in api.devices() if d["id"] in ids and d["online"])

        wait_until(lambda: online() == DEVICES, 60, "the server to see every device online", period=0.5)

        rollout = api.create_rollout(
            name="crep-v1",
            model_version_id=version_ids[0],
            selector={"group": "crep"},
            start=True,
            waves=[{"count": 6}, {"count": 6}, {"percent": 100}],
            soak_seconds=3,
        )

        def confirmed() -> int:
            return int(api.rollout(rollout["id"])["deploy"]["by_state"].get("confirmed", 0))

        wait_until(lambda: confirmed() >= 3, 300, "the first devices to confirm", period=0.5)
        assert confirmed() < DEVICES, "the rollout finished before the leader could be killed"
        # Every replica consumes: both have handled device statuses (no single active consumer).
        assert _received(a, "status") > 0 and _received(b, "status") > 0

        killed = time.monotonic()
        a.kill()
        takeover = wait_until(b.is_leader, 60, "replica B to take over")
        a.start()  # restarted: it follows, and consumes again
        wait_until(lambda: a.health() is not None, 120, "the killed replica to serve again")
        assert b.is_leader() and not a.is_leader()

        done: dict[str, Any] = {}

        def settled() -> bool:
            done.update(api.rollout(rollout["id"]))
            return done["state"] in ("completed", "paused", "rolled_back")

        wait_until(settled, 600, "the rollout to settle", period=1.0)
        finished = time.monotonic() - killed
        assert done["state"] == "completed", done.get("state_reason")
        # No device acted on twice: one deploy action per device, confirmed; each device installed once.
        rows = _sql(
            db, "SELECT device_id, purpose, state FROM device_actions WHERE rollout_id = %s", rollout["id"]
        )
        assert sorted(r[0] for r in rows) == ids
        assert {(r[1], r[2]) for r in rows} == {("deploy", "confirmed")}
        totals = fleet.snapshot().totals
        assert totals["installs_confirmed"] == DEVICES and totals["installs_failed"] == 0, totals
        assert {d["active_model_sha256"] for d in api.devices() if d["id"] in ids} == {
            releases[0].model_sha256
        }
        # Presence handled by two replicas out of order never leaves a connected device offline.
        wait_until(lambda: online() == DEVICES, 30, "every device online in the server's view", period=0.5)

        # The restarted replica consumes its share again (telemetry flows every second from every device).
        wait_until(
            lambda: _received(a, "telemetry") > 0, 60, "the restarted replica to consume again", period=0.5
        )
        sent = freeze_telemetry(fleet)
        assert sum(sent.values()) > 0
        stored: dict[str, int] = {}

        def all_stored() -> bool:
            stored.update(stored_reports(api, ids))
            return stored == sent

        try:
            wait_until(all_stored, 120, "every telemetry report to be stored", period=1.0)
        except AssertionError:
            diff = {d: (sent[d], stored.get(d)) for d in sent if stored.get(d) != sent[d]}
            raise AssertionError(f"telemetry sent vs stored differs: {diff}") from None
        # The database never went away: a replica that logs it unreachable mistook something for an outage
        # (deadlocks between replicas were, before batches locked their rows in device id order).
        for replica in replicas:
            assert "database unreachable" not in replica.log_path.read_text(errors="replace"), replica.name
        stale = sum(r.metric("tinyfleet_gateway_events", 'event="stale_presence"') for r in replicas)
        conflicts = sum(r.metric("tinyfleet_gateway_events", 'event="db_conflict_retries"') for r in replicas)
        print(
            f"cluster, leader SIGKILL: takeover {takeover:.2f} s (healthz polled 10/s); rollout completed"
            f" {finished:.1f} s after the kill; {sum(sent.values())} telemetry reports stored once;"
            f" stale presence dropped: {stale:.0f}; database conflicts retried: {conflicts:.0f}"
        )
