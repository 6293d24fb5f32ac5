"""The console page (tinyfleet/server/dashboard/index.html) reads the fields the API really returns: a
gated rollout's gates and metric numbers, the telemetry series behind its sparklines, /readyz and the
open alerts. The page names each object by a short variable (r rollout, g gate, m gate metric, p series
point, a alert); each field it reads appears as `var.field` in its source, and must be in a response."""

from __future__ import annotations

import re

from tests.server import test_canary_gate
from tests.server.test_canary_gate import BAD, WINDOW, publish, start
from tests.support.paths import REPO

fleet = test_canary_gate.fleet  # v1 and v2 of a shared model, scripted devices

PAGE = (REPO / "tinyfleet" / "server" / "dashboard" / "index.html").read_text()
ALERT_FIELDS = ("kind", "message", "opened_at", "last_seen_at", "state")


def read(var: str) -> set[str]:
    """The fields the page reads off `var` (`var.field`, not a method call)."""
    return set(re.findall(rf"\b{re.escape(var)}\.([a-z_]+)\b(?!\()", PAGE))


def test_page_is_self_contained():
    # offline: no external script, style, font or image
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", PAGE)
    assert "@import" not in PAGE and "url(" not in PAGE


def test_gates_of_a_paused_rollout_are_fields_of_the_api(fleet):
    rid, first = start(fleet, on_fail="pause")
    publish(fleet, fleet.t0 + WINDOW, first, **BAD["latency"])
    fleet.step(fleet.t0 + WINDOW + 1)
    rollout = next(r for r in fleet.api.ok("GET", "/api/rollouts") if r["id"] == rid)
    assert rollout["state"] == "paused" and rollout["canary"] is not None
    gate = rollout["gates"][0]
    assert gate["verdict"] == "fail"
    assert {"canary", "gates", "state", "state_reason"} <= read("r") and read("r") <= set(rollout)
    assert {"wave", "verdict", "reason", "window_start", "window_end", "metrics"} == read("g")
    assert read("g") <= set(gate)
    wanted = {"verdict", "canary", "control", "threshold", "p_value", "change"}
    wanted |= {"canary_samples", "control_samples"}
    assert read("m") == wanted
    for metric in gate["metrics"].values():
        assert wanted <= set(metric)
    # the page formats these metrics by name; the verdicts it styles are those the API gives
    for name in ("error_rate", "latency"):
        assert f'"{name}"' in PAGE and name in gate["metrics"]
    for verdict in ("pending", "not_enough_data", "pass", "fail", "accepted"):
        assert f".v-{verdict}" in PAGE

    # sparklines: the hour's 1-minute series of the version with telemetry
    assert "metric=confidence&resolution=1m" in PAGE
    series = fleet.api.ok(
        "GET",
        "/api/telemetry/series",
        # the window the reports went into (the scripted clock runs ahead of the real one)
        params={
            "model_version_id": fleet.v2["id"],
            "metric": "confidence",
            "resolution": "1m",
            "since": fleet.t0 - 60,
            "until": fleet.t0 + WINDOW + 60,
        },
    )
    assert series["points"] and {"points", "since", "until"} <= set(series)
    assert read("series") <= set(series) and read("series")
    assert read("p") == {"t", "value", "inference_count"} and read("p") <= set(series["points"][0])


def test_readiness_and_alerts_fields(fleet):
    resp = fleet.api.client.get("/readyz", headers={"Authorization": ""})  # public
    assert resp.status_code == 200
    body = resp.json()
    assert read("body") >= {"ready", "failing", "checks"} and {"ready", "failing", "checks"} <= set(body)
    assert all("detail" in check for check in body["checks"].values())
    assert 'fetch("/readyz")' in PAGE

    # /api/alerts may not exist yet: the page hides the section on 404; once it does, its documented
    # item fields must be those the page reads
    assert "resp.status === 404" in PAGE and "/api/alerts?state=open" in PAGE
    assert read("a") == set(ALERT_FIELDS)
    resp = fleet.api.client.get("/api/alerts", params={"state": "open"})
    if resp.status_code == 404:
        return
    assert resp.status_code == 200
    assert isinstance(resp.json(), list)  # the page also takes {items: [...]}
    # no alert is open on a fresh server: the item's fields come from the endpoint's response schema
    spec = fleet.api.client.get("/openapi.json").json()
    items = spec["paths"]["/api/alerts"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    item = spec["components"]["schemas"][items["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(ALERT_FIELDS) <= set(item["properties"])
