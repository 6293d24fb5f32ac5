"""End to end rollbacks: real Mosquitto, real control plane, simulated devices each driving the real C
runtime. A rollback of a completed rollout reverts every device to the model in its other slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.e2e_harness import e2e_env, wait_for

pytestmark = pytest.mark.timeout(300)


def test_rollback_restores_old_version_without_downloads(tmp_path: Path) -> None:
    with e2e_env(tmp_path) as env:
        specs, provisioned = env.provision(10, "rb")
        fleet = env.fleet(specs, provisioned[0].trusted_keys)
        v1, v2 = env.releases[0], env.releases[1]
        first = env.rollout("rb-v1", 0, "rb")
        assert env.wait_rollout(first["id"], ("completed", "paused"))["state"] == "completed"
        second = env.rollout("rb-v2", 1, "rb")
        assert env.wait_rollout(second["id"], ("completed", "paused"))["state"] == "completed"
        assert set(env.active_models(specs).values()) == {v2.model_sha256}

        device_bytes = fleet.snapshot().totals["chunk_bytes"]
        server_bytes = env.api.gateway_stats()["events"].get("chunk_bytes", 0)
        assert device_bytes == 10 * (len(v1.package) + len(v2.package))

        env.api.rollout_command(second["id"], "rollback")
        done = env.wait_rollout(second["id"], ("rolled_back",))
        assert done["rollback"]["by_state"] == {"confirmed": 10}
        wait_for(
            lambda: set(env.active_models(specs).values()) == {v1.model_sha256}, 30, "devices back on v1"
        )
        snap = fleet.snapshot()
        assert snap.totals["reverts"] == 10
        assert snap.totals["chunk_bytes"] == device_bytes, "a rollback must not download anything"
        assert env.api.gateway_stats()["events"].get("chunk_bytes", 0) == server_bytes
