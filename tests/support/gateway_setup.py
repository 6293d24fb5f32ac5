"""The MQTT gateway tests' helpers (tests/server/test_gateway.py, test_outage.py, test_telemetry_ingest.py):
waiting on a condition, and a model with two versions plus devices on a running stack."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinyfleet.server.stack import Stack


def wait_for(predicate: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll predicate every 20 ms; AssertionError naming `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def setup_hello(
    stack: Stack, models: Path, n_devices: int
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Versions 1.0.0 and 1.1.0 of the shared hello_world model (hardware class 1) and n_devices devices."""
    with stack.client() as c:
        model = c.post("/api/models", json={"name": "hello"}).json()
        url = f"/api/models/{model['id']}/versions"
        v1 = c.post(
            url,
            params={"version": "1.0.0", "hardware_class": 1},
            content=(models / "pairs" / "hello_world_int8.0.tflite").read_bytes(),
        ).json()
        v2 = c.post(
            url,
            params={"version": "1.1.0", "hardware_class": 1},
            content=(models / "pairs" / "hello_world_int8.1.tflite").read_bytes(),
        ).json()
        devices = [
            c.post("/api/devices", json={"id": f"dev-{i}", "hardware_class": 1}).json()
            for i in range(n_devices)
        ]
    return v1, v2, devices
