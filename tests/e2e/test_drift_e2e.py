"""Drift alarms through the real broker, control plane and agents: simulated devices whose sensor input
drifts (the profile's drift knob moves the class mix from mostly healthy to mostly ball faults) raise a
class_drift alert for the version they run; a fleet with a steady mix on another version raises none.

Per-version telemetry comes from per-minute rollups, so the baseline window is the minute in which the
rollout completed and the recent one the minute after it. The fleet therefore starts 18-38 s before a
minute ends: the baseline minute then holds the mix's early part and the next minute its drifted part.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from tests.support.e2e_harness import E2E, e2e_env, telemetry_profile, wait_for
from tinyfleet.demo_models import SILENTLY_WRONG
from tinyfleet.server.db import make_engine, session_scope
from tinyfleet.server.services import drift
from tinyfleet.server.services.rollups import MINUTE
from tinyfleet.server.services.telemetry_stats import window_stats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

GROUP_SIZE = 6  # per group, at 5 inferences a second: 30 a second per version
HEALTHY = (0.85, 0.05, 0.05, 0.05)  # normal, inner_race, outer_race, ball
BALL_FAULTS = (0.05, 0.05, 0.05, 0.85)
DRIFT_SECONDS = 30.0
# A short window (the minute rollups widen it to whole minutes); the thresholds as the canary demo's
# order of magnitude: a steady mix's sampling noise over a few hundred inferences is ~0.003 of JSD.
CONFIG = drift.DriftConfig(window=1.0, min_inferences=300, class_jsd_max=0.03, confidence_max_drop=0.10)
# Seconds before the next minute boundary at which the fleet may start (see the module docstring).
START_BEFORE_BOUNDARY = (18.0, 38.0)


def _alerts(env: E2E, **params: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = env.api._request("GET", "/alerts", params=params)
    return result


def _wait_for_start_phase() -> None:
    """Sleep until the next minute boundary is START_BEFORE_BOUNDARY seconds away (at most ~42 s)."""
    low, high = START_BEFORE_BOUNDARY
    while True:
        left = MINUTE - time.time() % MINUTE
        if low <= left <= high:
            return
        time.sleep(max(0.05, left - high if left > high else left + MINUTE - high))


def test_an_input_drift_raises_an_alert_and_a_steady_fleet_does_not(tmp_path: Path) -> None:
    with e2e_env(tmp_path) as env:
        if len(env.releases) <= SILENTLY_WRONG:
            pytest.skip("TensorFlow unavailable: no vibration classifier, so no class mix to drift")
        steady_profile = telemetry_profile().with_inputs(class_weights=HEALTHY)
        drifting_profile = telemetry_profile().with_inputs(
            class_weights=HEALTHY, drift_to=BALL_FAULTS, drift_seconds=DRIFT_SECONDS
        )
        steady_specs, provisioned = env.provision(GROUP_SIZE, "steady", steady_profile)
        drifting_specs, _ = env.provision(GROUP_SIZE, "drifting", drifting_profile)

        _wait_for_start_phase()  # the drift runs from each agent's start
        env.fleet(steady_specs + drifting_specs, provisioned[0].trusted_keys, processes=1)
        steady_rollout = env.rollout("steady-v1", 0, "steady")
        drifting_rollout = env.rollout("drifting-v2", 1, "drifting")
        steady_done = env.wait_rollout(steady_rollout["id"], ("completed", "paused", "rolled_back"), 60)
        drifting_done = env.wait_rollout(drifting_rollout["id"], ("completed", "paused", "rolled_back"), 60)
        assert steady_done["state"] == "completed", steady_done
        assert drifting_done["state"] == "completed", drifting_done
        steady_version, drifting_version = env.version_ids[0], env.version_ids[1]

        # The recent window must lie in the minute after the later baseline minute.
        finished = max(float(steady_done["finished_at"]), float(drifting_done["finished_at"]))
        recent_from = math.ceil((finished + CONFIG.window) / MINUTE) * MINUTE + CONFIG.window
        wait_for(
            lambda: time.time() >= recent_from, max(0.0, recent_from - time.time()) + 5, "the next minute"
        )

        db = make_engine(f"sqlite:///{env.workdir / 'server' / 'tinyfleet.db'}")
        try:
            opened: list[tuple[str, int]] = []

            def drift_alarm() -> bool:
                with session_scope(db) as session:
                    changes = drift.check_drift(session, time.time(), CONFIG)
                    opened.extend((a.kind, a.model_version_id) for event, a in changes if event == "opened")
                return ("class_drift", drifting_version) in opened

            wait_for(drift_alarm, 30, "a class_drift alert for the drifting fleet's version", period=1.0)

            # The steady version was measured on as many samples, and stayed within the thresholds.
            with Session(db) as session:
                steady_measure = _class_measure(session, steady_version, float(steady_done["finished_at"]))
        finally:
            db.dispose()

        assert steady_measure is not None, "the steady fleet's windows held too few inferences"
        assert not steady_measure["firing"], steady_measure
        assert all(version == drifting_version for _kind, version in opened), opened

        alerts = _alerts(env, state="open")
        assert {a["model_version_id"] for a in alerts} == {drifting_version}, alerts
        (class_alert,) = [a for a in alerts if a["kind"] == "class_drift"]
        numbers = class_alert["numbers"]
        assert numbers["value"] > CONFIG.class_jsd_max
        assert numbers["recent_window"][0] >= numbers["baseline_window"][1]
        assert min(numbers["baseline_samples"], numbers["recent_samples"]) >= CONFIG.min_inferences
        # The mix moved from healthy bearings to ball faults.
        baseline, recent = numbers["baseline_distribution"], numbers["recent_distribution"]
        assert recent[3] > baseline[3] and recent[0] < baseline[0], numbers
        assert _alerts(env, model_version_id=steady_version) == []


def _class_measure(session: Session, version_id: int, finished: float) -> dict[str, Any] | None:
    now = time.time()
    base, _ = window_stats(session, finished, finished + CONFIG.window, model_version_id=version_id)
    recent, _ = window_stats(session, now - CONFIG.window, now, model_version_id=version_id)
    return drift.measure("class_drift", base, recent, CONFIG)
