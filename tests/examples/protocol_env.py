"""A private broker and a real control plane for the protocol tests (tests/test_protocol_schemas.py,
tests/examples/test_reference_device.py): what a device written from docs/PROTOCOL.md talks to."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from tests.support.e2e_harness import require_tools
from tests.support.paths import REPO
from tinyfleet.conformance.environment import connect_service
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.services.credentials import hash_password, write_password_file
from tinyfleet.sim.server_api import ServerApi

SERVER_USER = "tinyfleet-server"
# Extra service accounts for the tests' own clients: brokers run with use_username_as_clientid, so a client
# logged in as the gateway's user would take its session over.
TEST_USERS = ("tinyfleet-spy", "tinyfleet-probe")
SCHEMAS = REPO / "docs" / "schemas"
EXAMPLES = REPO / "examples"


@dataclass
class ProtocolEnv:
    workdir: Path
    broker: DevBroker
    api: ServerApi
    server_password: str
    test_passwords: dict[str, str]

    def provision(self, device_id: str, hardware_class: int = 1, **extra: Any) -> dict[str, Any]:
        """POST /api/devices; the raw answer (4.6). The broker rereads the password file."""
        body = {"id": device_id, "hardware_class": hardware_class, **extra}
        answer: dict[str, Any] = self.api._request("POST", "/devices", json=body)
        self.broker.reload()
        return answer

    def service_client(self, username: str) -> mqtt.Client:
        """A connected paho client with one of TEST_USERS, a service account (the whole tf/ tree)."""
        return connect_service(self.broker.host, self.broker.port, username, self.test_passwords[username])


@dataclass
class Capture:
    """Every message on tf/# seen by a service-account subscriber: (topic, payload, retain)."""

    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return list(self.messages)


@contextmanager
def protocol_env(workdir: Path) -> Iterator[ProtocolEnv]:
    require_tools()
    from tinyfleet.server.stack import run_stack

    server_password = secrets.token_urlsafe(12)
    password_file = workdir / "mosquitto.passwd"
    write_password_file(password_file, [(SERVER_USER, hash_password(server_password))])
    with DevBroker(password_file=password_file, admin_users=[SERVER_USER, *TEST_USERS]) as broker:
        url = f"mqtt://{SERVER_USER}:{server_password}@{broker.host}:{broker.port}"
        with run_stack(
            url, data_dir=workdir / "server", mqtt_password_file=password_file, tick_seconds=0.2
        ) as server:
            api = ServerApi(server.url, server.token)
            # Appended after the server wrote the file at start (it appends devices, keeping these).
            test_passwords = {user: secrets.token_urlsafe(12) for user in TEST_USERS}
            with open(password_file, "a", encoding="ascii") as f:
                f.writelines(f"{u}:{hash_password(p)}\n" for u, p in test_passwords.items())
            broker.reload()
            try:
                yield ProtocolEnv(workdir, broker, api, server_password, test_passwords)
            finally:
                api.close()


def load_schemas() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.schema.json"))}
