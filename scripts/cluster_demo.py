"""`make cluster-demo` (issue 16): the production topology on one machine, then a rollout through failures.

    3 RabbitMQ nodes (deploy/cluster/rabbitcluster.py: MQTT 3.1.1 + X.509 device login, per-device
      topic rights asked of the server over HTTP, device traffic in a replicated quorum queue)
    PostgreSQL (the machine's, a database of the demo's own, dropped at the end)
    2 control-plane replicas (`tinyfleet server run`), each publishing through its own broker node and
      both consuming the quorum queue; one holds the leader lock and runs the rollout engine
    500 simulated devices (real C runtime each), MQTT 3.1.1, spread round robin over the nodes

Then a rollout starts; mid-rollout one broker node and the leader replica are SIGKILLed; the demo shows
the devices moving to the other nodes, the other replica taking over, and the rollout completing, with
timings. Options: --devices N, --workdir DIR (kept), --pg-admin-url URL, --no-kill-leader.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tinyfleet.demo_models import MODEL_NAME, build_releases  # noqa: E402
from tinyfleet.server.services.fleet_ca import FleetCA, write_pair  # noqa: E402
from tinyfleet.signing.keys import generate_private_key, save_keypair  # noqa: E402
from tinyfleet.sim.cli import provision_fleet  # noqa: E402
from tinyfleet.sim.fleet import Fleet, FleetConfig  # noqa: E402
from tinyfleet.sim.profiles import FleetMix, get_profile  # noqa: E402
from tinyfleet.sim.server_api import ServerApi  # noqa: E402

TOKEN = "cluster-demo-token-" + secrets.token_hex(8)
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f} s] {message}", flush=True)


def wait(predicate: Callable[[], bool], timeout: float, what: str, period: float = 0.5) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(Exception):
            if predicate():
                return time.monotonic() - start
        time.sleep(period)
    raise SystemExit(f"cluster-demo: timed out after {timeout:.0f} s waiting for {what}")


def load_launcher() -> Any:
    spec = importlib.util.spec_from_file_location("rabbitcluster", REPO / "deploy/cluster/rabbitcluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def demo_database(admin_url: str) -> Iterator[str]:
    """A database of our own on the given PostgreSQL, dropped afterwards."""
    import psycopg

    name = f"tinyfleet_cluster_demo_{secrets.token_hex(4)}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise SystemExit(f"cluster-demo: PostgreSQL at {admin_url} is not usable: {exc}") from None
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with contextlib.suppress(psycopg.Error), psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Replica:
    def __init__(self, name: str, env: dict[str, str], port: int, log: Path) -> None:
        self.name, self.port, self.url = name, port, f"http://127.0.0.1:{port}"
        self.log_path = log
        cmd = [
            sys.executable,
            "-m",
            "tinyfleet.cli",
            "server",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/healthz", timeout=5).json()
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=500)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "TINYFLEET_DEMO_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument("--no-kill-leader", action="store_true")
    args = ap.parse_args()
    rc = load_launcher()
    if not (rc.RABBIT_BIN / "rabbitmq-server").exists():
        print(f"cluster-demo: RabbitMQ is not installed ({rc.RABBIT_BIN}); apt-get install rabbitmq-server")
        return 1
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tinyfleet-cluster-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        failed = [True]  # the work directory (logs) is kept when the demo fails
        if args.workdir is None:
            stack.callback(
                lambda: shutil.rmtree(work, True) if not failed[0] else print(f"logs kept in {work}")
            )
        db_url = stack.enter_context(demo_database(args.pg_admin_url))
        say(f"PostgreSQL database {db_url.rsplit('/', 1)[1]}; work directory {work}")
        ca = FleetCA.open(work / "fleet-ca", None)
        write_pair(work / "broker-tls", "broker", ca.issue_broker())
        shutil.copy(ca.cert_path, work / "broker-tls" / "ca.pem")
        signing = work / "server-signing"
        save_keypair(signing, generate_private_key())
        release_key = generate_private_key()
        save_keypair(work / "release", release_key)
        ports = [rc.quiet_port(), rc.quiet_port()]  # not ports RabbitMQ's connections may take
        password = secrets.token_hex(16)  # rabbitmqctl takes a leading "-" for an option
        # The brokers ask replica B for device logins: A is the one killed (behind a load balancer in
        # production, docs/DEPLOY.md).
        cluster = rc.create(work / "rabbit", work / "broker-tls", f"http://127.0.0.1:{ports[1]}", password)
        stack.callback(rc.stop, cluster)
        started = time.monotonic()
        login_ready = rc.start(cluster)  # one node after another, each accepting an MQTT login
        nodes = cluster.nodes
        say(
            f"3 RabbitMQ nodes clustered and accepting MQTT logins in {time.monotonic() - started:.1f} s: "
            + ", ".join(f"{n.name} ({login_ready[n.name]} s)" for n in nodes)
        )
        replicas: list[Replica] = []
        for i, name in enumerate(("a", "b")):
            order = nodes[i:] + nodes[:i]
            env = dict(os.environ)
            env.update(
                TINYFLEET_DATABASE_URL=db_url,
                TINYFLEET_API_TOKEN=TOKEN,
                TINYFLEET_DATA_DIR=str(work / f"replica-{name}"),
                TINYFLEET_SIGNING_KEY=f"{signing}.pem",
                TINYFLEET_TRUSTED_KEYS=str(work / "release.pub"),
                TINYFLEET_DEVICE_AUTH="cert",
                TINYFLEET_CA_DIR=str(work / "fleet-ca"),
                TINYFLEET_MQTT_URL=f"mqtt://{rc.SERVER_USER}:{password}@127.0.0.1:{order[0].mqtt_port}",
                TINYFLEET_MQTT_PROTOCOL="3.1.1",
                TINYFLEET_MQTT_OTHER_NODES=",".join(f"127.0.0.1:{n.mqtt_port}" for n in order[1:]),
                TINYFLEET_DEVICE_MQTT_URL=f"mqtts://127.0.0.1:{nodes[0].mqtts_port}",
                TINYFLEET_AMQP_URL=",".join(
                    f"amqp://{rc.SERVER_USER}:{password}@127.0.0.1:{n.amqp_port}/%2F" for n in order
                ),
                TINYFLEET_BROKER_AUTH_HTTP="on",
                TINYFLEET_REPLICA_NAME=f"tinyfleet-replica-{name}",
                TINYFLEET_TICK_SECONDS="0.5",
            )
            replica = Replica(name, env, ports[i], work / f"replica-{name}.log")
            stack.callback(replica.kill)
            replicas.append(replica)
            wait(lambda r=replica: bool(r.health()["ok"]), 120, f"replica {name} to serve")  # type: ignore[misc]
        leaders = [r.name for r in replicas if r.health().get("leader")]
        say(f"2 replicas serving (A publishes via {nodes[0].name}, B via {nodes[1].name}); leader: {leaders}")
        api = ServerApi(replicas[1].url, TOKEN)
        stack.callback(api.close)
        profile = get_profile("lan")
        releases = build_releases(release_key, profile.hardware_class, with_selftest=False)
        api.ensure_model(MODEL_NAME)
        version_id = int(api.upload_package(releases[0].package)["model_version_id"])
        specs, provisioned = provision_fleet(api, args.devices, FleetMix.single(profile), "demo", "demo")
        say(f"{args.devices} devices provisioned (X.509 certificates from the fleet CA)")
        brokers = tuple(("127.0.0.1", n.mqtts_port) for n in nodes)
        config = FleetConfig(
            "127.0.0.1",
            0,
            provisioned[0].trusted_keys,
            tuple(specs),
            mqtt_protocol="3.1.1",
            brokers=brokers,
            subscribe_qos=0,
        )
        fleet = Fleet(config, processes=2).start(timeout=300)
        stack.callback(fleet.stop)

        def online() -> int:
            return sum(1 for d in api.devices(group="demo") if d["online"])

        last = [0.0]

        def all_online() -> bool:
            seen = online()
            if time.monotonic() - last[0] > 30:
                last[0] = time.monotonic()
                say(f"  connected: {fleet.snapshot().online}/{args.devices}; online for the server: {seen}")
            return bool(seen == args.devices)

        took = wait(all_online, 900, "every device online", period=2.0)
        say(f"{args.devices} devices online (MQTT 3.1.1 over TLS, round robin over 3 nodes) in {took:.1f} s")
        rollout = api.create_rollout(
            name="cluster-demo",
            model_version_id=version_id,
            selector={"group": "demo"},
            start=True,
            waves=[{"percent": 100}],
            max_concurrent=100,
        )
        rollout_start = time.monotonic()

        def confirmed() -> int:
            return int(api.rollout(rollout["id"])["deploy"]["by_state"].get("confirmed", 0))

        wait(lambda: confirmed() >= args.devices // 5, 600, "a fifth of the fleet to confirm")
        say(f"rollout under way: {confirmed()}/{args.devices} confirmed; SIGKILL broker node {nodes[1].name}")
        killed = time.monotonic()
        rc.kill_node(cluster, 1)
        other: Replica | None = None
        if not args.no_kill_leader:
            leader = next((r for r in replicas if r.health().get("leader")), None)
            if leader is not None:
                say(f"SIGKILL the leader replica {leader.name}; until now {events(leader)}")
                leader.kill()
                other = next(r for r in replicas if r is not leader)
                api.close()
                api = ServerApi(other.url, TOKEN)
                stack.callback(api.close)
        # Both recoveries at once: when the other replica leads, when every device is connected again.
        reconnected: float | None = None
        took_over: float | None = None if other is not None else 0.0
        deadline = time.monotonic() + 300
        while (reconnected is None or took_over is None) and time.monotonic() < deadline:
            if reconnected is None and fleet.snapshot().online == args.devices:
                reconnected = time.monotonic() - killed
                say(f"all devices connected again {reconnected:.1f} s after the broker node died")
            if took_over is None and other is not None:
                with contextlib.suppress(Exception):
                    if other.health().get("leader"):
                        took_over = time.monotonic() - killed
                        say(f"replica {other.name} runs the rollout engine {took_over:.1f} s after the kill")
            time.sleep(0.2)
        if reconnected is None or took_over is None:
            raise SystemExit("cluster-demo: the fleet or the replicas did not recover within 300 s")
        wait(
            lambda: api.rollout(rollout["id"])["state"] in ("completed", "paused", "rolled_back"),
            900,
            "the rollout",
        )
        done = api.rollout(rollout["id"])
        say(
            f"rollout {done['state']} in {time.monotonic() - rollout_start:.1f} s:"
            f" {done['deploy']['by_state']} (with 1 of 3 broker nodes and 1 of 2 replicas dead)"
        )
        # Both replicas handled device messages, possibly one device's out of order: presence carries its
        # connection's (boot, seq), so no device is left offline in the server's view (PROTOCOL.md 4.6).
        with contextlib.suppress(SystemExit):
            wait(lambda: online() == args.devices, 60, "every device online for the server")
        alive = [r for r in replicas if r.proc.poll() is None]
        say(
            f"devices online for the server: {online()}/{args.devices}; replicas alive {len(alive)}; "
            + "; ".join(f"replica {r.name}: {events(r)}" for r in replicas)
        )
        failed[0] = done["state"] != "completed" or online() != args.devices
        return 0 if not failed[0] else 1


def events(replica: Replica) -> str:
    """What a replica's gateway counted and logged of the orderings issue 16 is about."""
    counts = {"stale_presence": 0.0, "stale_reported": 0.0, "db_conflict_retries": 0.0, "status": 0.0}
    with contextlib.suppress(Exception):
        text = httpx.get(
            f"{replica.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ).text
        for line in text.splitlines():
            for key in counts:
                if f'"{key}"' in line and line.startswith(
                    ("tinyfleet_gateway_events", "tinyfleet_mqtt_messages_received")
                ):
                    counts[key] += float(line.rsplit(" ", 1)[1])
    log = Path(replica.log_path).read_text(errors="replace")
    unreachable = log.count("database unreachable")
    return (
        f"statuses handled {counts['status']:.0f}, stale presence dropped {counts['stale_presence']:.0f},"
        f" stale reported {counts['stale_reported']:.0f}, database conflicts retried"
        f" {counts['db_conflict_retries']:.0f}, 'database unreachable' logged {unreachable}"
        + ("" if replica.proc.poll() is None else " (killed: counters gone, log kept)")
    )


if __name__ == "__main__":
    sys.exit(main())
