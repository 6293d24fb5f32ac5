"""End-to-end harness: a real Mosquitto (the dev broker, per-device passwords and ACL), the real control
plane (in-process `run_stack`, or a child process that a test can SIGKILL), signed releases of a real
model, and simulated devices that each drive the real C runtime."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.paths import REPO
from tinyfleet.demo_models import MODEL_NAME, Release, build_releases
from tinyfleet.server.devbroker import DevBroker, find_mosquitto
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.signing.keys import TrustedKey, generate_private_key, save_keypair
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import DeviceSpec, Fleet, FleetConfig, LocalFleet
from tinyfleet.sim.profiles import DeviceProfile, FleetMix, get_profile
from tinyfleet.sim.server_api import ProvisionedDevice, ServerApi

SERVER_USER = "tinyfleet-server"

# A child-process control plane: prints its URL and token as one JSON line, then serves until killed.
_SERVE = """
import json, sys, time
from pathlib import Path
from tinyfleet.server.stack import run_stack
args = json.loads(sys.argv[1])
with run_stack(args["mqtt_url"], data_dir=args["data_dir"], mqtt_password_file=Path(args["password_file"]),
               trusted_key_paths=(Path(args["release_pub"]),), tick_seconds=0.2) as stack:
    print(json.dumps({"url": stack.url, "token": stack.token}), flush=True)
    while True:
        time.sleep(3600)
"""


def require_tools() -> None:
    try:
        find_mosquitto()
    except RuntimeError as exc:
        pytest.skip(str(exc))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, period: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class ChildServer:
    process: subprocess.Popen[str]
    url: str
    token: str

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@dataclass
class E2E:
    workdir: Path
    broker: DevBroker
    api: ServerApi
    release_key: Ed25519PrivateKey
    release_pub: Path
    releases: list[Release]
    version_ids: list[int]
    mqtt_url: str
    password_file: Path
    stack: ExitStack
    child: ChildServer | None = None
    fleets: list[LocalFleet | Fleet] = field(default_factory=list)

    def provision(
        self, count: int, prefix: str, profile: DeviceProfile | None = None, group: str | None = None
    ) -> tuple[list[DeviceSpec], list[ProvisionedDevice]]:
        profile = profile or get_profile("lan")
        specs, provisioned = provision_fleet(
            self.api, count, FleetMix.single(profile), prefix, group or prefix, seed=len(prefix)
        )
        self.broker.reload()  # the server rewrote the password file
        time.sleep(0.2)
        return specs, provisioned

    def fleet(
        self,
        specs: list[DeviceSpec],
        trusted: tuple[TrustedKey, ...],
        processes: int | None = 0,
    ) -> LocalFleet | Fleet:
        """processes=0: in this process (tests can look inside agents); otherwise worker processes."""
        config = FleetConfig(self.broker.host, self.broker.port, trusted, tuple(specs))
        fleet: LocalFleet | Fleet = LocalFleet(config) if processes == 0 else Fleet(config, processes)
        fleet.start()
        self.fleets.append(fleet)
        assert fleet.wait_online(timeout=60), "simulated devices did not all come online"
        wait_for(lambda: self.online_count(specs) == len(specs), 30, "the server to see every device online")
        return fleet

    def online_count(self, specs: list[DeviceSpec]) -> int:
        ids = {s.device_id for s in specs}
        return sum(1 for d in self.api.devices() if d["id"] in ids and d["online"])

    def rollout(self, name: str, version_index: int, selector_group: str, **options: Any) -> dict[str, Any]:
        options.setdefault("waves", [{"percent": 100}])
        return self.api.create_rollout(
            name=name,
            model_version_id=self.version_ids[version_index],
            selector={"group": selector_group},
            start=True,
            **options,
        )

    def wait_rollout(self, rollout_id: int, states: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
        result: dict[str, Any] = {}

        def settled() -> bool:
            nonlocal result
            result = self.api.rollout(rollout_id)
            return result["state"] in states

        wait_for(settled, timeout, f"rollout {rollout_id} to reach {states}")
        return result

    def active_models(self, specs: list[DeviceSpec]) -> dict[str, str | None]:
        ids = {s.device_id for s in specs}
        return {d["id"]: d["active_model_sha256"] for d in self.api.devices() if d["id"] in ids}

    def admin_publish(self, messages: list[tuple[str, bytes, bool]]) -> None:
        """Publish raw (topic, payload, retain) messages with the server's broker account, QoS 1."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        password = self.mqtt_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-admin", protocol=mqtt.MQTTv5)
        client.username_pw_set(SERVER_USER, password)
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        try:
            for topic, payload, retain in messages:
                client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

    # ----- server lifecycle -------------------------------------------------------------------------------

    def start_child_server(self) -> ChildServer:
        args = {
            "mqtt_url": self.mqtt_url,
            "data_dir": str(self.workdir / "server"),
            "password_file": str(self.password_file),
            "release_pub": str(self.release_pub),
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE, json.dumps(args)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            raise AssertionError(f"child server exited with {proc.returncode}")
        info = json.loads(line)
        self.child = ChildServer(proc, info["url"], info["token"])
        self.api.close()
        self.api = ServerApi(self.child.url, self.child.token)
        return self.child


def _upload_releases(api: ServerApi, releases: list[Release]) -> list[int]:
    api.ensure_model(MODEL_NAME)
    # v3's self-test expectation is wrong on purpose: the devices, not the server, are to catch it.
    return [
        int(api.upload_package(r.package, allow_selftest_mismatch=True)["model_version_id"]) for r in releases
    ]


_RELEASES: dict[str, Any] = {}


def demo_releases() -> tuple[Ed25519PrivateKey, list[Release]]:
    """Signed releases, built once per test session (the signing key is per session too)."""
    if not _RELEASES:
        key = generate_private_key()
        _RELEASES["key"] = key
        _RELEASES["releases"] = build_releases(key, get_profile("lan").hardware_class, with_selftest=False)
    return _RELEASES["key"], _RELEASES["releases"]


@contextmanager
def e2e_env(workdir: Path, in_process_server: bool = True) -> Iterator[E2E]:
    require_tools()
    key, releases = demo_releases()
    release_pub = workdir / "release.pub"
    if not release_pub.exists():
        save_keypair(workdir / "release", key)
    server_password = secrets.token_urlsafe(12)
    password_file = workdir / "mosquitto.passwd"
    write_password_file(password_file, [(SERVER_USER, hash_password(server_password))])
    with ExitStack() as stack:
        broker = stack.enter_context(DevBroker(password_file=password_file, admin_users=[SERVER_USER]))
        mqtt_url = f"mqtt://{SERVER_USER}:{server_password}@{broker.host}:{broker.port}"
        env = E2E(workdir, broker, None, key, release_pub, releases, [], mqtt_url, password_file, stack)  # type: ignore[arg-type]
        if in_process_server:
            from tinyfleet.server.stack import run_stack

            server = stack.enter_context(
                run_stack(
                    mqtt_url,
                    data_dir=workdir / "server",
                    mqtt_password_file=password_file,
                    trusted_key_paths=(release_pub,),
                    tick_seconds=0.2,
                )
            )
            env.api = ServerApi(server.url, server.token)
        else:
            env.api = ServerApi("http://127.0.0.1:1", "unused")
            env.start_child_server()
        env.version_ids = _upload_releases(env.api, releases)
        try:
            yield env
        finally:
            for fleet in env.fleets:
                fleet.stop()
            if env.child is not None:
                env.child.kill()
            env.api.close()


# ----- `tinyfleet server run --broker` as the control plane (fault tests) ----------------------------------


@dataclass
class ManagedBroker:
    """The broker `tinyfleet server run --broker` owns, as E2E uses it: the server reloads it itself."""

    host: str
    port: int

    def reload(self) -> None:
        pass


def start_server_run(env: E2E, api_port: int) -> ChildServer:
    """Start `tinyfleet server run --broker` on env's data directory (again after a kill: same database,
    same recorded broker port); env.api and env.broker then point at it."""
    data = env.workdir / "server"
    token = "e2e-server-run-token-0123456789"
    child_env = dict(os.environ)
    child_env.pop("TINYFLEET_MQTT_URL", None)
    child_env.update(
        TINYFLEET_DATA_DIR=str(data),
        TINYFLEET_DATABASE_URL=f"sqlite:///{data / 'tinyfleet.db'}",
        TINYFLEET_API_TOKEN=token,
        TINYFLEET_TRUSTED_KEYS=str(env.release_pub),
        TINYFLEET_TICK_SECONDS="0.2",
    )
    data.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tinyfleet.cli", "server", "run", "--broker", "--port", str(api_port)]
    with open(env.workdir / "server-run.log", "ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env, stdout=log, stderr=subprocess.STDOUT, text=True)
    child = ChildServer(proc, f"http://127.0.0.1:{api_port}", token)
    env.child = child
    env.api.close()
    env.api = ServerApi(child.url, token)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"`tinyfleet server run --broker` exited with {proc.returncode}")
        try:
            env.api.devices()
        except Exception:
            return False
        return True

    wait_for(healthy, 60, "`tinyfleet server run --broker` to serve")
    state = json.loads((data / "broker.json").read_text())
    env.broker = ManagedBroker(state["host"], int(state["port"]))  # type: ignore[assignment]
    return child


@contextmanager
def server_run_env(workdir: Path) -> Iterator[E2E]:
    """Like e2e_env, with `tinyfleet server run --broker` in a child process as the control plane."""
    from tests.support.ports import free_port

    require_tools()
    key, releases = demo_releases()
    release_pub = workdir / "release.pub"
    if not release_pub.exists():
        save_keypair(workdir / "release", key)
    with ExitStack() as stack:
        api = ServerApi("http://127.0.0.1:1", "unused")
        env = E2E(workdir, None, api, key, release_pub, releases, [], "", Path(), stack)  # type: ignore[arg-type]
        try:
            start_server_run(env, free_port())
            env.version_ids = upload_good_releases(env.api, releases)
            yield env
        finally:
            for fleet in env.fleets:
                fleet.stop()
            if env.child is not None:
                env.child.kill()  # its broker dies with it (PR_SET_PDEATHSIG)
            env.api.close()


def upload_good_releases(api: ServerApi, releases: list[Release]) -> list[int]:
    """Upload v1 and v2 only: the server now refuses v3 (its self-test digest is wrong on purpose) at
    upload, and tests that do not roll out a bad release have no use for it."""
    api.ensure_model(MODEL_NAME)
    return [int(api.upload_package(r.package)["model_version_id"]) for r in releases[:2]]


# ----- telemetry counting ----------------------------------------------------------------------------------


def freeze_telemetry(fleet: LocalFleet) -> dict[str, int]:
    """Stop every agent's telemetry timer and return the reports each has sent (its next seq; the boot
    id is fixed for the run): a stored count equal to it means none lost, none counted twice."""
    import dataclasses

    def freeze() -> dict[str, int]:
        sent = {}
        for device_id, agent in fleet.agents.items():
            agent.profile = dataclasses.replace(agent.profile, telemetry_period_s=0)  # no rescheduling
            if agent._telemetry_timer is not None:
                agent._telemetry_timer.cancel()
                agent._telemetry_timer = None
            sent[device_id] = agent._telemetry_seq
        return sent

    result: dict[str, int] = fleet.call(freeze)
    return result


def stored_reports(api: ServerApi, device_ids: list[str]) -> dict[str, int]:
    return {d: int(api.telemetry_summary(device_id=d)["reports"]) for d in device_ids}


# ----- canary gates ----------------------------------------------------------------------------------------


def telemetry_profile(period_s: float = 1.0, inference_hz: float = 5.0) -> DeviceProfile:
    """The LAN profile reporting often: a canary gate gets its samples in seconds, not minutes."""
    import dataclasses

    return dataclasses.replace(get_profile("lan"), telemetry_period_s=period_s, inference_hz=inference_hz)


def failing_metrics(rollout: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The metrics that failed in any of a rollout's canary gates (GET /api/rollouts/{id})."""
    return {
        name: m
        for gate in rollout.get("gates") or []
        for name, m in (gate.get("metrics") or {}).items()
        if m["verdict"] == "fail"
    }
