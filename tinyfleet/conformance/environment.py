"""What the kit runs the device under test against: a private Mosquitto (the development broker, with
per-device passwords and the PROTOCOL 4.6 ACL), the real control plane (SQLite in its own data
directory), an MQTT spy on the device's topics, and the device process itself."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from tinyfleet.server.devbroker import DevBroker, find_mosquitto
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.signing.keys import generate_private_key, save_keypair

SERVER_USER = "tinyfleet-server"
SPY_USER = "tinyfleet-conformance-spy"  # reads the device's topics
PLAYER_USER = "tinyfleet-conformance"  # plays the server when the real one is stopped
ENV_PROVISIONING = "TINYFLEET_PROVISIONING"
ENV_STATE_DIR = "TINYFLEET_STATE_DIR"
ENV_HOST = "TINYFLEET_MQTT_HOST"
ENV_PORT = "TINYFLEET_MQTT_PORT"


class KitError(RuntimeError):
    """The kit itself cannot run (no broker binary, the device command does not start, ...)."""


class Failed(AssertionError):
    """A scenario's check did not hold: the message is its one-line reason."""


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, period: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(period)
    raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass(frozen=True)
class Message:
    at: float  # time.monotonic() when the spy got it
    kind: str  # the topic below tf/{id}/: desired, reported, presence, chunk/req, chunk, status, telemetry
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Spy:
    """Every message on tf/{id}/# as a service account sees it, in arrival order."""

    device_id: str
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        prefix = f"tf/{self.device_id}/"
        if msg.topic.startswith(prefix):
            with self.lock:
                self.messages.append(
                    Message(time.monotonic(), msg.topic[len(prefix) :], bytes(msg.payload), bool(msg.retain))
                )

    def since(self, mark: float, kind: str | None = None) -> list[Message]:
        with self.lock:
            return [m for m in self.messages if m.at >= mark and (kind is None or m.kind == kind)]

    def statuses(self, action_id: str, mark: float = 0.0) -> list[dict[str, Any]]:
        out = []
        for m in self.since(mark, "status"):
            try:
                doc = m.json()
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("action_id") == action_id:
                out.append(doc)
        return out


def connect_service(host: str, port: int, username: str, password: str) -> mqtt.Client:
    """A connected paho client of a service account; the broker rereads its password file
    asynchronously, so a refusal is retried for a while."""
    deadline = time.monotonic() + 20
    while True:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv5)
        client.username_pw_set(username, password)
        outcome: list[bool] = []
        answered = threading.Event()

        def on_connect(
            _c: Any,
            _u: Any,
            _f: Any,
            reason: Any,
            _p: Any,
            out: list[bool] = outcome,
            ev: threading.Event = answered,
        ) -> None:
            out.append(not reason.is_failure)
            ev.set()

        client.on_connect = on_connect
        client.connect(host, port)
        client.loop_start()
        if answered.wait(10) and outcome and outcome[0]:
            return client
        client.disconnect()
        client.loop_stop()
        if time.monotonic() > deadline:
            raise KitError(f"the broker refuses the kit's account {username}")
        time.sleep(0.2)


def close_service(client: mqtt.Client, timeout: float = 5.0) -> None:
    """Disconnect a client of connect_service and stop its network thread once the DISCONNECT went
    out. Stopping the thread at once can leave the connection open; the broker, which takes the
    username as client id, would then see the account's next login take that connection's place."""
    gone = threading.Event()
    client.on_disconnect = lambda *_args: gone.set()
    if client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
        gone.wait(timeout)
    client.loop_stop()


class Api:
    """The control plane's HTTP API, as an operator uses it."""

    def __init__(self, url: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=url.rstrip("/") + "/api", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise Failed(f"{method} /api{path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def upload_package(self, package: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/octet-stream"}
        result: dict[str, Any] = self.call("POST", "/packages", content=package, headers=headers)
        return result

    def upload_tflite(
        self, model_id: int, tflite: bytes, version: str, hardware_class: int
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.call(
            "POST",
            f"/models/{model_id}/versions",
            params={"version": version, "hardware_class": hardware_class},
            content=tflite,
            headers={"Content-Type": "application/octet-stream"},
        )
        return result

    def close(self) -> None:
        self.client.close()


class DeviceProcess:
    """The device under test, started from the command line the user gave. Placeholders in it:
    {provisioning} (the provisioning answer, a JSON file), {state_dir} (its persistent storage, kept
    across restarts), {host} and {port} (the kit's broker); the same values are in the environment
    (TINYFLEET_PROVISIONING, TINYFLEET_STATE_DIR, TINYFLEET_MQTT_HOST, TINYFLEET_MQTT_PORT)."""

    def __init__(self, command: str, values: dict[str, str], log_path: Path) -> None:
        try:
            self.argv = [part.format(**values) for part in shlex.split(command)]
        except (ValueError, KeyError, IndexError) as exc:
            raise KitError(f"--device-cmd cannot be parsed: {exc}") from None
        if not self.argv:
            raise KitError("--device-cmd is empty")
        self.env = dict(os.environ)
        self.env.update(
            {
                ENV_PROVISIONING: values["provisioning"],
                ENV_STATE_DIR: values["state_dir"],
                ENV_HOST: values["host"],
                ENV_PORT: values["port"],
            }
        )
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"--- kit: start {self.argv}\n".encode())
            try:
                self.process = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
                )
            except OSError as exc:
                raise KitError(f"cannot start the device command {self.argv[0]!r}: {exc}") from None
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 60.0) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL after `grace` seconds. The return code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Environment:
    workdir: Path
    device_id: str
    hardware_class: int
    broker: DevBroker
    api: Api
    spy: Spy
    spy_client: mqtt.Client
    passwords: dict[str, str]
    kit_key: Ed25519PrivateKey
    answer: dict[str, Any]
    device: DeviceProcess
    server_stack: ExitStack
    server_running: bool = True

    def stop_server(self) -> None:
        """Stop the control plane (the broker stays): the kit then plays the server itself."""
        if self.server_running:
            self.api.close()
            self.server_stack.close()
            self.server_running = False

    def player(self) -> mqtt.Client:
        """The kit's account for playing the server. One connection at a time (close it with
        close_service): the broker takes the username as client id, so a second login of the account
        closes the first, and paho's reconnects make the two take turns, each losing its subscriptions."""
        return connect_service(self.broker.host, self.broker.port, PLAYER_USER, self.passwords[PLAYER_USER])


def open_environment(
    stack: ExitStack,
    workdir: Path,
    device_cmd: str,
    device_id: str,
    hardware_class: int,
) -> Environment:
    """Start broker and control plane, provision the device, write its provisioning file; the device
    is not started yet. Everything stops with `stack`."""
    from tinyfleet.server.stack import run_stack  # the whole server: only when the kit runs

    try:
        find_mosquitto()
    except RuntimeError as exc:
        raise KitError(str(exc)) from None
    workdir.mkdir(parents=True, exist_ok=True)
    passwords = {user: secrets.token_urlsafe(16) for user in (SERVER_USER, SPY_USER, PLAYER_USER)}
    password_file = workdir / "mosquitto.passwd"
    write_password_file(password_file, [(SERVER_USER, hash_password(passwords[SERVER_USER]))])
    broker = stack.enter_context(
        DevBroker(
            password_file=password_file,
            admin_users=[SERVER_USER, SPY_USER, PLAYER_USER],
            workdir=workdir / "broker",
        )
    )
    kit_key = generate_private_key()
    _pem, kit_pub = save_keypair(workdir / f"kit-release-{secrets.token_hex(4)}", kit_key)
    server_stack = ExitStack()
    stack.callback(server_stack.close)
    url = f"mqtt://{SERVER_USER}:{passwords[SERVER_USER]}@{broker.host}:{broker.port}"
    server = server_stack.enter_context(
        run_stack(
            url,
            data_dir=workdir / "server",
            mqtt_password_file=password_file,
            trusted_key_paths=(kit_pub,),
            tick_seconds=0.2,
        )
    )
    # The server rewrote the password file at start and appends devices to it, keeping these lines.
    with open(password_file, "a", encoding="ascii") as f:
        f.writelines(f"{u}:{hash_password(passwords[u])}\n" for u in (SPY_USER, PLAYER_USER))
    api = Api(server.url, server.token)
    answer: dict[str, Any] = api.call(
        "POST", "/devices", json={"id": device_id, "hardware_class": hardware_class}
    )
    broker.reload()
    answer["mqtt"]["host"], answer["mqtt"]["port"] = broker.host, broker.port
    provisioning = workdir / f"{device_id}.provisioning.json"
    provisioning.write_text(json.dumps(answer, indent=2))
    os.chmod(provisioning, 0o600)  # it holds the device's password
    spy = Spy(device_id)
    spy_client = connect_service(broker.host, broker.port, SPY_USER, passwords[SPY_USER])
    spy_client.on_message = spy.on_message
    spy_client.subscribe(f"tf/{device_id}/#", qos=1)
    stack.callback(spy_client.loop_stop)
    stack.callback(spy_client.disconnect)
    values = {
        "provisioning": str(provisioning),
        "state_dir": str(workdir / f"{device_id}-state"),
        "host": broker.host,
        "port": str(broker.port),
    }
    Path(values["state_dir"]).mkdir(parents=True, exist_ok=True)
    device = DeviceProcess(device_cmd, values, workdir / "device.log")
    stack.callback(device.stop)
    return Environment(
        workdir,
        device_id,
        hardware_class,
        broker,
        api,
        spy,
        spy_client,
        passwords,
        kit_key,
        answer,
        device,
        server_stack,
    )
