"""End to end with a real firmware device: a small fleet where one device is the mps2-an386 firmware under
QEMU (tinyfleet/sim/qemu_transport.py), speaking MQTT through the same agent code as the host-library devices,
takes a rollout and a rollback; the board's own STATE answer, read again after a power cycle (so from its
persisted flash), must agree with the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e_harness import E2E, e2e_env, wait_for
from tinyfleet.sim.cli import run_on_qemu
from tinyfleet.sim.fleet import LocalFleet
from tinyfleet.sim.qemu_transport import QemuTransport, qemu_unavailable
from tinyfleet.sim.runtime_driver import RuntimeState

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[E2E]:
    reason = qemu_unavailable()
    if reason is not None:
        pytest.skip(reason)
    with e2e_env(tmp_path) as e:
        yield e


def _board_state(fleet: LocalFleet, device_id: str, power_cycle: bool = False) -> RuntimeState:
    """The QEMU board's STATE, optionally after a power cycle (flash saved, QEMU restarted)."""
    driver = fleet.agents[device_id].driver
    transport = driver.transport
    assert isinstance(transport, QemuTransport)

    def read() -> RuntimeState:
        if power_cycle:
            transport.device.power_cycle()
        return driver.state()

    state: RuntimeState = fleet.call(read, timeout=60)
    return state


def test_qemu_device_confirms_a_rollout_and_reverts_on_rollback(env: E2E) -> None:
    specs, provisioned = env.provision(3, "qm")
    specs = run_on_qemu(specs, 1)
    board = specs[0].device_id
    assert specs[0].qemu and not specs[1].qemu
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet)
    v1, v2 = env.releases[0], env.releases[1]
    assert _board_state(fleet, board).active_model_sha256() is None

    first = env.rollout("qm-v1", 0, "qm")
    done = env.wait_rollout(first["id"], ("completed", "paused", "rolled_back"), timeout=90)
    assert done["state"] == "completed", done["state_reason"]
    assert done["deploy"]["by_state"] == {"confirmed": 3}
    assert set(env.active_models(specs).values()) == {v1.model_sha256}
    state = _board_state(fleet, board, power_cycle=True)
    assert (state.phase, state.active_model_sha256()) == ("idle", v1.model_sha256)
    assert fleet.agents[board].stats.installs_confirmed == 1

    second = env.rollout("qm-v2", 1, "qm")
    assert env.wait_rollout(second["id"], ("completed", "paused"), timeout=90)["state"] == "completed"
    assert _board_state(fleet, board).active_model_sha256() == v2.model_sha256

    env.api.rollout_command(second["id"], "rollback")
    done = env.wait_rollout(second["id"], ("rolled_back",), timeout=90)
    assert done["rollback"]["by_state"] == {"confirmed": 3}
    wait_for(lambda: set(env.active_models(specs).values()) == {v1.model_sha256}, 30, "devices back on v1")
    state = _board_state(fleet, board, power_cycle=True)
    assert (state.phase, state.active_model_sha256()) == ("idle", v1.model_sha256)
    assert fleet.agents[board].stats.reverts == 1
    assert state.raw.slots[0].valid and state.raw.slots[1].valid  # v2 still there: a revert, no download
