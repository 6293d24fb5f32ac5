"""The scripted fleet of the rollout tests (tests/server): the control plane in-process, v1 and v2 of a
shared model, scripted devices that follow their desired state. The `fleet` fixture is in
tests/server/conftest.py."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.inprocess_api import Api
from tests.support.paths import SHARED_MODELS
from tests.support.server_scripted import ScriptedDevice
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import Device
from tinyfleet.server.services.messages import DeviceMessages
from tinyfleet.server.services.telemetry_ingest import TelemetryIngest
from tinyfleet.signing.keys import TrustStore

# The rollout driver's logic is exercised on SQLite; the tests marked BOTH also run on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

PAIRS = SHARED_MODELS / "pairs"


@dataclass
class Fleet:
    api: Api
    ctx: AppContext
    messages: DeviceMessages
    devices: dict[str, ScriptedDevice]
    v1: dict[str, Any]
    v2: dict[str, Any]
    t0: float = 0.0
    now: float = 0.0
    telemetry: TelemetryIngest | None = None  # telemetry's one path, the batching writer, on `now`

    def send_telemetry(self, messages: list[tuple[str, dict[str, Any]]]) -> None:
        """(device_id, telemetry message) pairs stored as one batch, as the gateway's writer does."""
        assert self.telemetry is not None
        self.telemetry.write_now((device_id, json.dumps(msg).encode()) for device_id, msg in messages)

    def sha(self, version: dict[str, Any]) -> str:
        sha: str = version["packages"][0]["model_sha256"]
        return sha

    def add_device(
        self,
        device_id: str,
        *,
        online: bool = True,
        hardware_class: int = 1,
        blank: bool = False,
        **labels: Any,
    ) -> ScriptedDevice:
        """A device running v1 in slot 0, or with no model at all (`blank`)."""
        self.api.ok(
            "POST", "/api/devices", 201, json={"id": device_id, "hardware_class": hardware_class, **labels}
        )
        store = TrustStore(bytes.fromhex(k["public_key"]) for k in self.api.ok("GET", "/api/trust-store"))
        dev = ScriptedDevice(
            device_id,
            hardware_class,
            self.messages.handle,
            store,
            slots=[None if blank else self.sha(self.v1), None],
            active=None if blank else 0,
            seqs=[0 if blank else self.v1["packages"][0]["sequence"], 0],
        )
        self.devices[device_id] = dev
        if online:
            dev.come_online()
        return dev

    def desired(self, device_id: str) -> Any:
        """The device's desired state as stored (a dict, or None before any)."""
        with self.ctx.session() as s:
            device = s.get(Device, device_id)
            assert device is not None, device_id
            return device.desired

    def step(self, now: float, *, rounds: int = 1) -> None:
        """Tick, let every device act on its desired state, tick again."""
        self.now = now
        for _ in range(rounds):
            self.ctx.rollout_driver.tick(now)
            for dev in self.devices.values():
                dev.follow(self.desired(dev.device_id))
            self.ctx.rollout_driver.tick(now)

    def rollout(self, rid: int) -> dict[str, Any]:
        out: dict[str, Any] = self.api.ok("GET", f"/api/rollouts/{rid}")
        return out

    def actions(self, rid: int, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.api.ok("GET", f"/api/rollouts/{rid}/actions", params=params)
        return out

    def create(self, start: bool = True, **body: Any) -> dict[str, Any]:
        body.setdefault("name", "r")
        body.setdefault("model_version_id", self.v2["id"])
        out: dict[str, Any] = self.api.ok("POST", "/api/rollouts", 201, json={"start": start, **body})
        return out


def new_fleet(api: Api) -> Fleet:
    """v1 and v2 of the shared hello_world model (hardware class 1, 512-byte chunks), no devices yet."""
    model = api.ok("POST", "/api/models", 201, json={"name": "hello"})
    url = f"/api/models/{model['id']}/versions"
    v1, v2 = (
        api.ok(
            "POST",
            url,
            201,
            params={"version": version, "hardware_class": 1},
            content=(PAIRS / f"hello_world_int8.{i}.tflite").read_bytes(),
        )
        for i, version in enumerate(("1.0.0", "1.1.0"))
    )
    api.ok("PUT", "/api/hardware-classes/1", json={"name": "m4", "chunk_size": 512})
    fleet = Fleet(api, api.ctx, None, {}, v1, v2, t0=time.time(), now=time.time())  # type: ignore[arg-type]
    fleet.messages = DeviceMessages(
        api.ctx.db, default_chunk_size=1024, stats=api.ctx.stats, clock=lambda: fleet.now
    )
    fleet.telemetry = TelemetryIngest(api.ctx.db, api.ctx.stats, clock=lambda: fleet.now)
    return fleet
