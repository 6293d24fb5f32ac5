"""The server predicts device refusals before it sends anything: rollouts check every targeted device with
the runtime's own install policy on its reported capabilities (409 with a per-device table, or the devices
left out with skip_incompatible), and uploads check a hardware class's slot and RAM limits (422)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.paths import REPO
from tinyfleet.device.engine_check import ENGINE_BUILTIN_OPS
from tinyfleet.server.services.messages import DeviceMessages

VECTORS = REPO / "tests" / "vectors"
SMALL = (VECTORS / "model.tflite").read_bytes()  # FULLY_CONNECTED, SOFTMAX; 2752 bytes
LARGE = (VECTORS / "model_large.tflite").read_bytes()  # 28784 bytes
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
SOFTMAX = 25


def caps(**overrides: Any) -> dict[str, Any]:
    base = {"slot_size": 64 * 1024, "sector_size": 4096, "ram_budget": 64 * 1024, "engine": True,
            "ops": list(ENGINE_BUILTIN_OPS), "payload_decoder": True}  # fmt: skip
    return {**base, **overrides}


def reported(
    capabilities: dict[str, Any] | None,
    *,
    hardware_class: int = 1,
    runtime_version: int = 0x000100,
    sequence: int | None = None,
) -> dict[str, Any]:
    slot = {"valid": True, "model_name": "old", "version": "1.0.0", "model_sha256": "ab" * 32, "sequence": 0}
    obj: dict[str, Any] = {
        "runtime_version": runtime_version,
        "hardware_class": hardware_class,
        "phase": "idle",
        "active_slot": None if sequence is None else 0,
        "security_floor": 0,
        "download_offset": 0,
        "last_error": 0,
        "slots": [{**slot, "sequence": sequence}, {"valid": False}] if sequence is not None else [],
    }
    if capabilities is not None:
        obj["capabilities"] = capabilities
    return obj


@dataclass
class World:
    api: Any
    messages: DeviceMessages
    version_id: int = 0
    uploads: int = 0

    def device(self, device_id: str, report: dict[str, Any], hardware_class: int = 1) -> None:
        self.api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": hardware_class})
        self.messages.handle(f"tf/{device_id}/presence", b'{"online": true}')
        self.messages.handle(f"tf/{device_id}/reported", json.dumps(report).encode())

    def upload(self, model: bytes, status: int = 201, **params: Any) -> Any:
        self.uploads += 1
        mid = self.api.ok("POST", "/api/models", 201, json={"name": f"m{self.uploads}"})["id"]
        params = {"version": "1.0.0", "hardware_class": 1, **params}
        out = self.api.ok("POST", f"/api/models/{mid}/versions", status, params=params, content=model)
        if status == 201:
            self.version_id = out["id"]
        return out

    def create(self, status: int = 201, **body: Any) -> Any:
        body = {"name": "r", "model_version_id": self.version_id, "start": True, **body}
        return self.api.ok("POST", "/api/rollouts", status, json=body)


@pytest.fixture
def world(api: Any) -> World:
    return World(api, DeviceMessages(api.ctx.db, default_chunk_size=1024, stats=api.ctx.stats))


def refused(world: World, **body: Any) -> dict[str, str]:
    """Create (and start) a rollout that must be refused; device id -> the error name in the table."""
    answer = world.create(409, **body)
    assert "would refuse the package" in answer["detail"] and "\n" not in answer["detail"]
    assert world.api.ok("GET", "/api/rollouts") == []  # nothing was kept
    return {row["device_id"]: row["error"] for row in answer["incompatible"]}


def test_too_large_for_the_slot_is_409_or_skipped(world: World) -> None:
    world.upload(LARGE)
    world.device("small", reported(caps(slot_size=16 * 1024)))
    world.device("big", reported(caps()))
    answer = world.create(409)
    row = answer["incompatible"][0]
    assert row == {"device_id": "small", "error_code": 36, "error": "TOO_LARGE", "reason": row["reason"]}
    assert "do not fit a slot of" in row["reason"]
    rollout = world.create(skip_incompatible=True)
    assert [d["device_id"] for d in rollout["skipped_devices"]] == ["small"]
    actions = world.api.ok("GET", f"/api/rollouts/{rollout['id']}/actions")
    assert [a["device_id"] for a in actions] == ["big"]


@SQLITE_ONLY
def test_wrong_hardware_class(world: World) -> None:
    world.upload(SMALL)
    world.device("other", reported(caps(), hardware_class=2))  # provisioned as class 1, reports 2
    assert refused(world) == {"other": "WRONG_HARDWARE"}


@SQLITE_ONLY
def test_runtime_too_old(world: World) -> None:
    world.upload(SMALL, min_runtime_version="0.2.0")
    world.device("old", reported(caps(), runtime_version=0x000100))
    world.device("new", reported(caps(), runtime_version=0x000200))
    assert refused(world) == {"old": "RUNTIME_TOO_OLD"}


@SQLITE_ONLY
def test_sequence_replay(world: World) -> None:
    world.upload(SMALL)
    world.device("ahead", reported(caps(), sequence=0xFFFFFFF0))
    assert refused(world) == {"ahead": "REPLAYED"}


@SQLITE_ONLY
def test_unsupported_op_and_draft_then_start(world: World) -> None:
    world.upload(SMALL)
    ops = [op for op in ENGINE_BUILTIN_OPS if op != SOFTMAX]
    world.device("no-softmax", reported(caps(ops=ops)))
    world.device("fine", reported(caps()))
    answer = world.create(409, start=False)  # a draft is checked too
    assert answer["incompatible"][0]["reason"] == "the device engine lacks SOFTMAX"
    draft = world.create(start=False, skip_incompatible=True)
    assert [(d["device_id"], d["error"]) for d in draft["skipped_devices"]] == [
        ("no-softmax", "UNSUPPORTED_OP")
    ]
    started = world.api.ok("POST", f"/api/rollouts/{draft['id']}/start")  # still leaves it out
    actions = world.api.ok("GET", f"/api/rollouts/{started['id']}/actions")
    assert [a["device_id"] for a in actions] == ["fine"]


@SQLITE_ONLY
def test_start_skip_incompatible_body(world: World) -> None:
    world.upload(SMALL)
    world.device("fine", reported(caps()))
    draft = world.create(start=False)
    world.device("tiny-ram", reported(caps(ram_budget=64)))  # arrives after the draft
    resp = world.api.client.post(f"/api/rollouts/{draft['id']}/start")
    assert resp.status_code == 409 and resp.json()["incompatible"][0]["error"] == "ARENA_TOO_LARGE"
    started = world.api.ok("POST", f"/api/rollouts/{draft['id']}/start", json={"skip_incompatible": True})
    assert started["state"] == "running"
    assert [d["device_id"] for d in started["skipped_devices"]] == ["tiny-ram"]


@SQLITE_ONLY
def test_unknown_capabilities_are_not_refused(world: World) -> None:
    world.upload(LARGE)
    world.device("legacy", reported(None))  # an older device: no capabilities in its report
    device = world.api.ok("GET", "/api/devices/legacy")
    assert device["capabilities"] is None
    assert world.create()["deploy"]["total"] == 1


@SQLITE_ONLY
def test_capabilities_are_stored_and_bad_ones_malformed(world: World) -> None:
    world.device("dev-1", reported(caps(slot_size=32768)))
    stored = world.api.ok("GET", "/api/devices/dev-1")["capabilities"]
    assert stored["slot_size"] == 32768 and stored["hardware_class"] == 1 and stored["payload_decoder"]
    before = world.messages.stats.snapshot()["malformed"].get("reported", 0)
    world.messages.handle("tf/dev-1/reported", json.dumps(reported(caps(ops=["CONV_2D"]))).encode())
    assert world.messages.stats.snapshot()["malformed"]["reported"] == before + 1
    world.messages.handle("tf/dev-1/reported", json.dumps(reported(None)).encode())  # keeps the last ones
    assert world.api.ok("GET", "/api/devices/dev-1")["capabilities"]["slot_size"] == 32768


def test_upload_refused_by_hardware_class_limits(world: World) -> None:
    world.api.ok("PUT", "/api/hardware-classes/1", json={"name": "m0", "chunk_size": 512, "slot_size": 16384})
    answer = world.upload(LARGE, 422)
    assert "TOO_LARGE" in answer["detail"] and "slot_size 16384" in answer["detail"]
    world.api.ok("PUT", "/api/hardware-classes/1", json={"name": "m0", "chunk_size": 512, "ram_budget": 16})
    answer = world.upload(SMALL, 422)
    assert "ARENA_TOO_LARGE" in answer["detail"] and "ram_budget of 16" in answer["detail"]
    hw = world.api.ok("GET", "/api/hardware-classes")[0]
    assert hw["ram_budget"] == 16 and hw["slot_size"] is None
    world.upload(SMALL, 201, hardware_class=2)  # a class without limits is not checked


@SQLITE_ONLY
def test_a_late_joiner_that_would_refuse_is_left_out(world: World) -> None:
    world.upload(LARGE)
    world.device("big", reported(caps()))
    rollout = world.create()
    world.device("late-small", reported(caps(slot_size=16 * 1024)))  # comes online after the start
    world.device("late-big", reported(caps()))
    world.api.ctx.rollout_driver.tick(1e12)
    after = world.api.ok("GET", f"/api/rollouts/{rollout['id']}")
    assert [(d["device_id"], d["error"]) for d in after["skipped_devices"]] == [("late-small", "TOO_LARGE")]
    actions = world.api.ok("GET", f"/api/rollouts/{rollout['id']}/actions")
    assert sorted(a["device_id"] for a in actions) == ["big", "late-big"]
    world.api.ctx.rollout_driver.tick(1e12)  # judged once: not listed twice
    assert len(world.api.ok("GET", f"/api/rollouts/{rollout['id']}")["skipped_devices"]) == 1
