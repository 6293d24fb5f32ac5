"""End to end: server-signed sequences rise across models, so a fleet moves from model A to model B and
back to a new version of A (each confirmed by the real C runtime); an old package is still a replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e_harness import E2E, e2e_env
from tests.support.paths import REPO
from tinyfleet.sim.profiles import get_profile
from tinyfleet.sim.server_api import ServerApiError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

VECTORS = REPO / "tests" / "vectors"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[E2E]:
    with e2e_env(tmp_path) as e:
        yield e


def test_fleet_moves_across_models_and_refuses_an_old_package(env: E2E) -> None:
    specs, provisioned = env.provision(4, "seq")
    env.fleet(specs, provisioned[0].trusted_keys)  # devices trust the server's signing key
    hw = get_profile("lan").hardware_class
    model_a = env.api.ensure_model("seq-a")
    model_b = env.api.ensure_model("seq-b")

    def upload(model: dict, version: str, name: str) -> dict:
        return env.api.upload_tflite(
            model["id"], (VECTORS / name).read_bytes(), version=version, hardware_class=hw
        )

    a1 = upload(model_a, "1.0.0", "model.tflite")
    b1 = upload(model_b, "1.0.0", "model_update.tflite")
    a2 = upload(model_a, "1.1.0", "model_large.tflite")
    seqs = [v["packages"][0]["sequence"] for v in (a1, b1, a2)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3, seqs

    for name, version in (("to-a1", a1), ("to-b1", b1), ("to-a2", a2)):
        rollout = env.api.create_rollout(
            name=name,
            model_version_id=version["id"],
            selector={"group": "seq"},
            waves=[{"percent": 100}],
            start=True,
        )
        done = env.wait_rollout(rollout["id"], ("completed", "paused", "rolled_back"))
        assert done["state"] == "completed", (
            name,
            done["state_reason"],
            env.api.rollout_actions(rollout["id"]),
        )
        assert done["deploy"]["by_state"] == {"confirmed": 4}
        target = version["packages"][0]["model_sha256"]
        assert set(env.active_models(specs).values()) == {target}, name

    # What an operator would try: a new rollout of the old version A 1.0.0. Its package (a lower
    # sequence than the active A 1.1.0's) is a replay. The server predicts it with the runtime's own
    # policy from the devices' reported state and refuses before sending a byte (409, one row per
    # device); the runtime's own refusal of a replay is covered by the REPLAYED golden vectors. (Going
    # back is a rollback, which re-signs the old model with a fresh sequence.)
    body = {"name": "back-to-a1", "model_version_id": a1["id"], "selector": {"group": "seq"},
            "waves": [{"percent": 100}], "start": True}  # fmt: skip
    with pytest.raises(ServerApiError) as refused:
        env.api.create_rollout(**body)
    assert refused.value.status == 409, refused.value
    assert "4 of 4 targeted device(s) would refuse" in str(refused.value) and "REPLAYED" in str(refused.value)
    assert set(env.active_models(specs).values()) == {a2["packages"][0]["model_sha256"]}
