"""The console (tinyfleet/server/dashboard: index.html and its js modules) reads the fields the API really
returns: a gated rollout's gates and metric numbers, the telemetry series behind its charts, /readyz, the
aggregated overview and rollout page. The pages name each object by a short variable (r rollout, g gate,
m gate metric, p series point, a alert, o overview, dev its devices, page a rollout or device page, w a
wave, act an action); each field read appears as `var.field` in the source, and must be in a response."""

from __future__ import annotations

import re

from tests.support.canary_traffic import BAD, WINDOW, publish, start
from tests.support.console_page import CONSOLE_DIR, fields, source

PAGE = source()
ALERT_FIELDS = ("kind", "message", "opened_at", "last_seen_at", "state")


def read(var: str) -> set[str]:
    return fields(var)


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

    # charts: the per-minute series of the version with telemetry
    assert 'resolution: "1m"' in PAGE and '"confidence"' in PAGE
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
    assert read("p") == {"t", "value"} and read("p") <= set(series["points"][0])

    # the overview and the rollout page: one aggregated response each
    o = fleet.api.ok("GET", "/api/console/overview")
    assert read("o") and read("o") <= set(o)
    assert read("dev") and read("dev") <= set(o["devices"])
    assert read("gw") and read("gw") <= set(o["gateway"])
    page = fleet.api.ok("GET", f"/api/console/rollouts/{rid}")
    device_page = fleet.api.ok("GET", f"/api/console/devices/{first[0]}")
    assert read("page") <= set(page) | set(device_page)
    assert read("w") and read("w") <= set(page["waves"][0]) | {"wave"}
    assert read("act") and read("act") <= set(device_page["actions"][0])
    failing = {"device_id", "rollout_id", "wave", "purpose", "error_name", "error", "updated_at"}
    assert read("f") >= failing  # f: a failing device (or the facets on the devices page)


def test_readiness_and_alerts_fields(fleet):
    resp = fleet.api.client.get("/readyz", headers={"Authorization": ""})  # public
    assert resp.status_code == 200
    body = resp.json()
    assert read("body") >= {"ready", "failing", "checks"} and {"ready", "failing", "checks"} <= set(body)
    assert all("detail" in check for check in body["checks"].values())
    assert 'fetch("/readyz")' in PAGE

    # open alerts come with the overview, in the items of /api/alerts
    assert read("a") == set(ALERT_FIELDS)
    assert fleet.api.ok("GET", "/api/console/overview")["alerts"] == []
    resp = fleet.api.client.get("/api/alerts", params={"state": "open"})
    assert resp.status_code == 200
    assert isinstance(resp.json(), list)
    # no alert is open on a fresh server: the item's fields come from the endpoint's response schema
    spec = fleet.api.client.get("/openapi.json").json()
    items = spec["paths"]["/api/alerts"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    item = spec["components"]["schemas"][items["items"]["$ref"].rsplit("/", 1)[1]]
    assert set(ALERT_FIELDS) <= set(item["properties"])


def test_rollout_form_sends_the_fields_of_the_create_schema():
    """The create form builds its body by hand: every key it sends must be one RolloutCreate accepts
    (the schema is strict, so a misspelt key would be a 422 only an operator would see)."""
    from tinyfleet.server.schemas import CanaryConfig, RolloutCreate, Selector

    form = (CONSOLE_DIR / "js" / "page_rollouts.js").read_text()
    canary = set(re.findall(r'\["([a-z_]+)", "[^"]*", [\d.]+\]', form))
    canary |= set(re.findall(r"body\.canary\.([a-z_]+)", form))
    assert canary == set(CanaryConfig.model_fields)
    body = re.search(r"const body = \{(.*?)\n    \};", form, re.S)
    assert body is not None
    keys = set(re.findall(r"\b([a-z_]+):", body.group(1)))
    keys |= set(re.findall(r"body\.([a-z_]+) =", form))
    selector = {"group", "tags", "hardware_class"}
    assert keys - selector - {"count", "percent"} <= set(RolloutCreate.model_fields)
    assert selector <= set(Selector.model_fields) and "canary" in keys
