"""A 3-node RabbitMQ cluster of our own (deploy/cluster/rabbitcluster.py) with the control plane in front
of it (issue 16): devices log in by X.509 certificate over MQTT 3.1.1, the server answers the broker's
auth checks over HTTP, publishes through one node over MQTT 3.1.1 and consumes device traffic over AMQP
from the replicated quorum queue. Skips when RabbitMQ is not installed."""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.e2e_harness import _upload_releases, demo_releases, wait_for
from tests.support.paths import REPO
from tinyfleet.demo_models import Release
from tinyfleet.server.config import Settings
from tinyfleet.server.services.fleet_ca import FleetCA, write_pair
from tinyfleet.server.stack import Stack
from tinyfleet.signing.keys import TrustedKey, save_keypair
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import DeviceSpec, FleetConfig, LocalFleet
from tinyfleet.sim.profiles import DeviceProfile, FleetMix, get_profile
from tinyfleet.sim.server_api import ProvisionedDevice, ServerApi

LAUNCHER = REPO / "deploy" / "cluster" / "rabbitcluster.py"


def launcher() -> ModuleType:
    """deploy/cluster/rabbitcluster.py (a stdlib-only script, not a package module)."""
    spec = importlib.util.spec_from_file_location("tinyfleet_rabbitcluster", LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    import sys

    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def rabbit_unavailable() -> str | None:
    rc = launcher()
    if not (rc.RABBIT_BIN / "rabbitmq-server").exists():
        return f"RabbitMQ is not installed ({rc.RABBIT_BIN}/rabbitmq-server missing)"
    if shutil.which("erl") is None and not Path("/usr/lib/erlang").exists():
        return "Erlang is not installed"
    return None


@dataclass
class ClusterEnv:
    workdir: Path
    rc: ModuleType
    cluster: Any  # rabbitcluster.Cluster
    stack: Stack
    api: ServerApi
    releases: list[Release]
    version_ids: list[int]
    exit: ExitStack
    fleets: list[LocalFleet] = field(default_factory=list)

    def device_brokers(self) -> tuple[tuple[str, int], ...]:
        return tuple(("127.0.0.1", n.mqtts_port) for n in self.cluster.nodes)

    def provision(
        self, count: int, prefix: str, profile: DeviceProfile | None = None
    ) -> tuple[list[DeviceSpec], list[ProvisionedDevice]]:
        mix = FleetMix.single(profile or get_profile("lan"))
        return provision_fleet(self.api, count, mix, prefix, prefix, seed=len(prefix))

    def fleet(self, specs: list[DeviceSpec], trusted: tuple[TrustedKey, ...]) -> LocalFleet:
        config = FleetConfig(
            "127.0.0.1",
            0,
            trusted,
            tuple(specs),
            mqtt_protocol="3.1.1",
            brokers=self.device_brokers(),
            subscribe_qos=0,
        )
        fleet = LocalFleet(config).start()
        self.fleets.append(fleet)
        assert fleet.wait_online(timeout=120), "simulated devices did not all come online"
        ids = {s.device_id for s in specs}
        wait_for(
            lambda: sum(1 for d in self.api.devices() if d["id"] in ids and d["online"]) == len(ids),
            60,
            "the server to see every device online",
        )
        return fleet

    def running_nodes(self) -> list[str]:
        """Node names the first live node reports running."""
        for i, node in enumerate(self.cluster.nodes):
            if not self.rc.port_open(node.amqp_port):
                continue
            out = self.rc.ctl(self.cluster, i, "eval", "rabbit_nodes:all_running().", timeout=60)
            return sorted(part.strip(" []'\n") for part in out.split(",") if "@" in part)
        return []


@contextmanager
def cluster_env(workdir: Path, nodes: int = 3, **overrides: Any) -> Iterator[ClusterEnv]:
    reason = rabbit_unavailable()
    if reason:
        pytest.skip(reason)
    rc = launcher()
    key, releases = demo_releases()
    release_pub = workdir / "release.pub"
    if not release_pub.exists():
        save_keypair(workdir / "release", key)
    data = workdir / "server"
    # The fleet CA first: the brokers' TLS listeners trust it and show a certificate it signed.
    ca = FleetCA.open(data / "fleet-ca", None)
    tls = workdir / "broker-tls"
    write_pair(tls, "broker", ca.issue_broker())
    shutil.copy(ca.cert_path, tls / "ca.pem")
    password = secrets.token_hex(16)  # rabbitmqctl takes a leading "-" for an option
    api_port = rc.quiet_port()  # not one RabbitMQ's own connections may take meanwhile
    cluster = rc.create(workdir / "rabbit", tls, f"http://127.0.0.1:{api_port}", password, nodes)
    with ExitStack() as stack:
        stack.callback(rc.stop, cluster)
        try:
            # Nodes start one by one, each once the previous accepts a real MQTT login (rc.start): a node
            # that keeps refusing fails here, named, instead of the fleet crowding onto the others.
            login_ready = rc.start(cluster)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            raise AssertionError(f"the RabbitMQ cluster did not start: {exc}") from None
        print(f"RabbitMQ nodes started and accepting MQTT logins after (s): {login_ready}")
        first = cluster.nodes[0]
        amqp = ",".join(
            f"amqp://{rc.SERVER_USER}:{password}@127.0.0.1:{n.amqp_port}/%2F" for n in cluster.nodes
        )
        settings = Settings(
            database_url=f"sqlite:///{data / 'tinyfleet.db'}",
            data_dir=data,
            mqtt_url=f"mqtt://{rc.SERVER_USER}:{password}@127.0.0.1:{first.mqtt_port}",
            device_mqtt_url=f"mqtts://127.0.0.1:{first.mqtts_port}",
            mqtt_protocol="3.1.1",
            mqtt_other_nodes=tuple(("127.0.0.1", n.mqtt_port) for n in cluster.nodes[1:]),
            amqp_url=amqp,
            broker_auth_http=True,
            device_auth="cert",
            trusted_key_paths=(release_pub,),
            tick_seconds=0.2,
            **overrides,
        )
        server = stack.enter_context(Stack(settings, port=api_port))
        api = ServerApi(server.url, server.token)
        stack.callback(api.close)
        env = ClusterEnv(workdir, rc, cluster, server, api, releases, [], stack)
        env.version_ids = _upload_releases(api, releases)
        assert server.ctx.amqp_intake is not None
        wait_for(server.ctx.amqp_intake.connected.is_set, 60, "the server to consume from the cluster")
        try:
            yield env
        finally:
            for fleet in env.fleets:
                fleet.stop()
