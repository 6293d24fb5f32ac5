"""End to end: real Mosquitto, real control plane, simulated devices each driving the real C runtime.
Rollbacks: test_rollbacks.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e_harness import E2E, e2e_env, wait_for
from tinyfleet.signing.keys import key_id
from tinyfleet.sim.fleet import LocalFleet

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[E2E]:
    with e2e_env(tmp_path) as e:
        yield e


def test_rollout_to_200_devices_completes(env: E2E) -> None:
    specs, provisioned = env.provision(200, "big")
    fleet = env.fleet(specs, provisioned[0].trusted_keys, processes=2)
    rollout = env.rollout("v1-to-200", 0, "big", max_concurrent=100)
    done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=180)
    assert done["state"] == "completed", done["state_reason"]
    assert done["deploy"]["by_state"] == {"confirmed": 200}
    v1 = env.releases[0]
    assert set(env.active_models(specs).values()) == {v1.model_sha256}
    snap = fleet.snapshot()
    assert snap.totals["installs_confirmed"] == 200
    assert snap.totals["installs_failed"] == 0
    # Every device fetched exactly its package once (resume by offset never re-sent bytes here).
    assert snap.totals["chunk_bytes"] == 200 * len(v1.package)


def test_failure_threshold_pauses_the_rollout(env: E2E) -> None:
    specs, provisioned = env.provision(8, "thr")
    env.fleet(specs, provisioned[0].trusted_keys)
    # A correctly signed release that fails on the devices in a way the server cannot predict from their
    # reported state: v3 installs, then fails its on-device self-test (it carries v2's expected output).
    rollout = env.rollout(
        "bad-selftest",
        2,
        "thr",
        waves=[{"count": 3}, {"percent": 100}],
        failure_threshold={"count": 2},
        failure_action="pause",
    )
    done = env.wait_rollout(rollout["id"], ("paused", "completed", "rolled_back"))
    assert done["state"] == "paused"
    actions = env.api.rollout_actions(rollout["id"])
    failed = [a for a in actions if a["state"] == "failed"]
    assert len(failed) >= 2
    assert {a["error_code"] for a in failed} == {42}  # SELFTEST_FAILED, the runtime's own code
    assert all(a["state"] == "queued" for a in actions if a["wave"] == 1), "wave 2 must not start"
    assert set(env.active_models(specs).values()) == {None}


def test_device_offline_during_rollout_catches_up(env: E2E) -> None:
    specs, provisioned = env.provision(6, "off")
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet)
    rollout = env.rollout("off-v1", 0, "off", waves=[{"count": 3}, {"percent": 100}], soak_seconds=3)
    actions = env.api.rollout_actions(rollout["id"])
    late = next(a["device_id"] for a in actions if a["wave"] == 1)
    fleet.set_offline([late])  # switched off before its wave begins
    wait_for(
        lambda: sum(a["state"] == "confirmed" for a in env.api.rollout_actions(rollout["id"])) == 5,
        90,
        "the five online devices to confirm",
    )
    time.sleep(1.0)
    assert env.api.rollout(rollout["id"])["state"] == "running"
    assert env.api.device(late)["active_model_sha256"] is None
    assert not env.api.device(late)["online"]

    fleet.bring_online([late])  # it finds its retained desired state and installs
    done = env.wait_rollout(rollout["id"], ("completed", "paused"))
    assert done["state"] == "completed"
    assert env.api.device(late)["active_model_sha256"] == env.releases[0].model_sha256


def test_device_refuses_package_signed_by_unknown_key(env: E2E) -> None:
    specs, provisioned = env.provision(4, "uk")
    release_kid = key_id(env.release_key)
    # These devices were built trusting only the server's key; the server itself also trusts the
    # offline release key, so it accepts and distributes the package. The devices must refuse it.
    device_keys = tuple(k for k in provisioned[0].trusted_keys if k.key_id != release_kid)
    assert device_keys and len(device_keys) < len(provisioned[0].trusted_keys)
    fleet = env.fleet(specs, device_keys)
    rollout = env.rollout("uk-v1", 0, "uk", failure_threshold={"count": 1}, failure_action="pause")
    done = env.wait_rollout(rollout["id"], ("paused", "completed", "rolled_back"))
    assert done["state"] == "paused"
    failed = [a for a in env.api.rollout_actions(rollout["id"]) if a["state"] == "failed"]
    assert failed and {a["error_code"] for a in failed} == {4}  # UNKNOWN_KEY
    assert set(env.active_models(specs).values()) == {None}
    assert fleet.snapshot().totals["installs_confirmed"] == 0
    for device_id in (a["device_id"] for a in failed):
        assert env.api.device(device_id)["reported"]["last_error"] == 4


def test_server_killed_mid_rollout_resumes_after_restart(tmp_path: Path) -> None:
    with e2e_env(tmp_path, in_process_server=False) as env:
        specs, provisioned = env.provision(12, "kill")
        env.fleet(specs, provisioned[0].trusted_keys)
        rollout = env.rollout(
            "kill-v1", 0, "kill", waves=[{"count": 4}, {"count": 4}, {"percent": 100}], soak_seconds=2
        )
        wait_for(
            lambda: any(a["state"] == "confirmed" for a in env.api.rollout_actions(rollout["id"])),
            60,
            "the first wave to start confirming",
        )
        assert env.child is not None
        env.child.kill()  # SIGKILL: no shutdown code runs
        time.sleep(1.0)
        env.start_child_server()  # same SQLite file, same broker
        done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"), timeout=120)
        assert done["state"] == "completed"
        assert done["deploy"]["by_state"] == {"confirmed": 12}
        assert set(env.active_models(specs).values()) == {env.releases[0].model_sha256}
