"""Fault tests with real processes (issue 11): the control plane SIGKILLed mid-rollout and restarted on
the same database, with an external broker and with its own `--broker`, and the broker itself restarted
on the same port mid-rollout. Each time the rollout completes, no action fails because of the fault, every
device ends confirmed on the new model, and every telemetry report sent (counted by the devices' seq) is
stored exactly once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e_harness
from tests.support.e2e_harness import (
    E2E,
    e2e_env,
    freeze_telemetry,
    server_run_env,
    start_server_run,
    stored_reports,
    upload_good_releases,
    wait_for,
)
from tinyfleet.sim.fleet import LocalFleet
from tinyfleet.sim.profiles import get_profile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DEVICES = 12


@pytest.fixture(autouse=True)
def _good_releases_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests roll out v1 only; the deliberately bad v3 is refused at upload by the server's check.
    monkeypatch.setattr(e2e_harness, "_upload_releases", upload_good_releases)


def _rollout_through_fault(
    env: E2E, prefix: str, fault: Callable[[], None], *, broker_dies: bool = False
) -> None:
    """broker_dies: the fault kills the broker, which runs with `persistence false` here, so a report it
    had acknowledged to a device but not yet delivered to the server dies with it (PROTOCOL 4.5). At one
    report a second per device, that is at most one report per device; every other report must arrive."""
    # Reports every second, so that confirmed devices are sending while the fault happens.
    profile = dataclasses.replace(get_profile("lan"), telemetry_period_s=1.0)
    specs, provisioned = env.provision(DEVICES, prefix, profile)
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet)
    rollout = env.rollout(
        f"{prefix}-v1", 0, prefix, waves=[{"count": 4}, {"count": 4}, {"percent": 100}], soak_seconds=2
    )
    wait_for(
        lambda: any(a["state"] == "confirmed" for a in env.api.rollout_actions(rollout["id"])),
        60,
        "the first wave to start confirming",
    )
    # The fault must land mid-rollout: waves 2 and 3 wait behind a soak, so most devices are still pending.
    confirmed = sum(a["state"] == "confirmed" for a in env.api.rollout_actions(rollout["id"]))
    assert confirmed < DEVICES
    fault()
    done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=150)
    assert done["state"] == "completed", done["state_reason"]
    actions = env.api.rollout_actions(rollout["id"])
    assert [a for a in actions if a["state"] != "confirmed"] == []  # none failed or timed out falsely
    assert done["deploy"]["by_state"] == {"confirmed": DEVICES}
    assert set(env.active_models(specs).values()) == {env.releases[0].model_sha256}
    assert fleet.snapshot().totals["installs_failed"] == 0

    sent = freeze_telemetry(fleet)
    assert sum(sent.values()) > 0
    stored: dict[str, int] = {}

    def all_stored() -> bool:
        stored.update(stored_reports(env.api, list(sent)))
        return stored == sent

    try:
        wait_for(all_stored, 30, "every telemetry report to be stored")
    except AssertionError:
        if not broker_dies:
            raise
    finally:
        _report(sent, stored)
    if broker_dies:
        assert all(0 <= n - stored.get(d, 0) <= 1 for d, n in sent.items()), "lost beyond the kill"
    else:
        assert stored == sent


def _report(sent: dict[str, int], stored: dict[str, Any]) -> None:
    lost = {d: n - stored.get(d, 0) for d, n in sent.items() if stored.get(d, 0) != n}
    if lost:
        print(f"telemetry reports sent minus stored, per device: {lost}")


def test_server_sigkill_mid_rollout_with_external_broker(tmp_path: Path) -> None:
    with e2e_env(tmp_path, in_process_server=False) as env:

        def kill_and_restart() -> None:
            assert env.child is not None
            env.child.kill()  # SIGKILL: no shutdown code runs; the broker keeps the gateway's session
            env.start_child_server()  # same SQLite file, same broker

        _rollout_through_fault(env, "kext", kill_and_restart)


def test_server_run_broker_sigkill_mid_rollout(tmp_path: Path) -> None:
    with server_run_env(tmp_path) as env:
        address = (env.broker.host, env.broker.port)

        def kill_and_restart() -> None:
            assert env.child is not None
            api_port = int(env.child.url.rsplit(":", 1)[1])
            env.child.kill()  # the broker goes down with the server (PR_SET_PDEATHSIG)
            start_server_run(env, api_port)
            # Devices were provisioned with this address: the new broker must listen there.
            assert (env.broker.host, env.broker.port) == address

        _rollout_through_fault(env, "kown", kill_and_restart, broker_dies=True)


def test_broker_restart_mid_rollout(tmp_path: Path) -> None:
    with e2e_env(tmp_path) as env:

        def restart_broker() -> None:
            env.broker.kill()
            wait_for(lambda: not env.api.gateway_stats()["connected"], 30, "the gateway to see the outage")
            env.broker.restart()  # same port and config: devices and gateway reconnect

        _rollout_through_fault(env, "kbrk", restart_broker, broker_dies=True)
