"""What a healthy device sends for an install (issue 12): the manifest and the payload in one chunk
request when the package fits the chunk size, and only `downloading` and `confirmed` when the trial
passes at once (PROTOCOL 4.3, 4.4). Real broker, real server, real C runtime."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.e2e_harness import E2E, e2e_env
from tinyfleet.sim.fleet import LocalFleet
from tinyfleet.sim.profiles import get_profile

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[E2E]:
    with e2e_env(tmp_path) as e:
        yield e


def test_whole_package_in_one_chunk_and_two_statuses(env: E2E) -> None:
    env.api.put_hardware_class(get_profile("lan"), chunk_size=8192)
    size = len(env.releases[0].package)
    assert size <= 8192
    specs, provisioned = env.provision(3, "onechunk")
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet)
    statuses_before = env.api.gateway_stats()["received"].get("status", 0)
    rollout = env.rollout("one-chunk", 0, "onechunk")
    done = env.wait_rollout(rollout["id"], ("completed", "paused"))
    assert done["state"] == "completed", done["state_reason"]
    totals = fleet.snapshot().totals
    # One chunk accepted per device, the whole package (manifest and payload), nothing more.
    assert totals["chunks_received"] == 3
    assert totals["chunk_bytes"] == 3 * size
    assert totals["installs_confirmed"] == 3
    # downloading and confirmed: no verifying or trial when the self-test passes.
    assert env.api.gateway_stats()["received"]["status"] - statuses_before == 6
    assert set(env.active_models(specs).values()) == {env.releases[0].model_sha256}


def test_one_kib_chunks_still_send_the_manifest_with_the_first_payload_bytes(env: E2E) -> None:
    env.api.put_hardware_class(get_profile("lan"), chunk_size=1024)
    size = len(env.releases[0].package)
    specs, provisioned = env.provision(2, "kib")
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet)
    rollout = env.rollout("kib", 0, "kib")
    done = env.wait_rollout(rollout["id"], ("completed", "paused"))
    assert done["state"] == "completed", done["state_reason"]
    totals = fleet.snapshot().totals
    assert totals["chunks_received"] == 2 * -(-size // 1024)  # ceil(size / 1 KiB) each, manifest included
    assert totals["chunk_bytes"] == 2 * size


def test_a_spurious_retry_teaches_the_device_the_round_trip(env: E2E) -> None:
    # A chunk timeout far below any round trip through the broker and the server: every first request
    # is asked again before its answer comes, so no request ever gives a clean round-trip sample.
    env.api.put_hardware_class(get_profile("lan"), chunk_size=1024)
    size = len(env.releases[0].package)
    profile = dataclasses.replace(get_profile("lan"), chunk_timeout_s=0.001)
    specs, provisioned = env.provision(2, "spurious", profile=profile)
    fleet = env.fleet(specs, provisioned[0].trusted_keys)
    assert isinstance(fleet, LocalFleet)
    rollout = env.rollout("spurious", 0, "spurious")
    done = env.wait_rollout(rollout["id"], ("completed", "paused"))
    assert done["state"] == "completed", done["state_reason"]
    totals = fleet.snapshot().totals
    assert totals["chunk_bytes"] == 2 * size  # the duplicates were not fed to the runtime
    assert totals["chunk_retries"] >= 2 and totals["chunk_duplicates"] >= 2
    # The second answer to a retried request showed the retry was spurious: the first answer's delay
    # became the device's round trip, which the next requests' timeouts are built on.
    for agent in fleet.agents.values():
        assert agent.round_trip > profile.chunk_timeout_s
