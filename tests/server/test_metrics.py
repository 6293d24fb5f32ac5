"""GET /metrics (issue 13 part 5): Prometheus text computed on scrape from the database and the gateway's
counters, behind the API token unless TINYFLEET_METRICS_PUBLIC=1; and JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import time
from typing import Any

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tinyfleet.server.logs import JsonFormatter, apply_format

SHA = "ab" * 32


def scrape(api: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    resp = api.client.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def activity(api: Any) -> None:
    messages = api.ctx.messages
    for device_id in ("dev-on", "dev-off", "dev-new"):
        api.ok("POST", "/api/devices", 201, json={"id": device_id, "hardware_class": 1})
    reported = {
        "runtime_version": 0x100,
        "hardware_class": 1,
        "phase": "idle",
        "active_slot": 0,
        "slots": [{"valid": True, "model_sha256": SHA, "sequence": 1}],
    }
    for device_id in ("dev-on", "dev-off"):
        messages.handle(f"tf/{device_id}/reported", json.dumps(reported).encode())
    messages.handle("tf/dev-on/presence", json.dumps({"online": True}).encode())
    report = {
        "ts": time.time() - 30,
        "model_sha256": SHA,
        "inference_count": 10,
        "latency_us_mean": 900.0,
        "class_histogram": [10],
        "confidence_mean": 0.7,
        "errors": 0,
        "arena_bytes": 2048,
        "boot": 1,
        "seq": 0,
    }
    ingest = api.ctx.telemetry_ingest
    for _ in range(2):  # the second is a redelivery
        ingest.write_now([("dev-on", json.dumps({"reports": [report]}).encode())])
    wrong = report | {"model_sha256": "cd" * 32, "seq": 1}
    ingest.write_now([("dev-on", json.dumps({"reports": [wrong]}).encode()), ("dev-on", b"not json")])


def test_metrics_after_activity(api):
    activity(api)
    m = scrape(api)
    devices = m["tinyfleet_devices"]
    # dev-on and dev-off run a digest no version carries; dev-new runs nothing
    assert devices[(("model", "unknown"), ("state", "online"), ("version", "unknown"))] == 1
    assert devices[(("model", "unknown"), ("state", "offline"), ("version", "unknown"))] == 1
    assert devices[(("model", ""), ("state", "offline"), ("version", ""))] == 1
    assert m["tinyfleet_telemetry_messages_received_total"][()] == 4
    assert m["tinyfleet_telemetry_reports_stored_total"][()] == 1
    assert m["tinyfleet_telemetry_duplicates_total"][()] == 1
    rejected = m["tinyfleet_telemetry_rejected_total"]
    assert rejected[(("reason", "wrong_model"),)] == 1 and rejected[(("reason", "malformed"),)] == 1
    assert m["tinyfleet_db_retries_total"][()] == 0
    assert 25 < m["tinyfleet_telemetry_ingest_lag_seconds"][()] < 120
    assert m["tinyfleet_mqtt_messages_received_total"][(("kind", "presence"),)] == 1
    assert m["tinyfleet_mqtt_connected"][()] == 0
    api.ctx.rollout_driver.tick()
    assert scrape(api)["tinyfleet_rollout_driver_ticks_total"][()] >= 1
    # each app has a registry of its own: nothing lands in prometheus_client's global one
    assert not [n for n in prometheus_client.REGISTRY._names_to_collectors if n.startswith("tinyfleet")]


def test_devices_are_labelled_with_their_version_and_rollouts_by_state(api, shared_models):
    model = api.ok("POST", "/api/models", 201, json={"name": "metered"})
    data = (shared_models / "hello_world_int8.tflite").read_bytes()
    params = {"version": "2.0.0", "hardware_class": 1}
    mv = api.ok("POST", f"/api/models/{model['id']}/versions", 201, params=params, content=data)
    sha = mv["packages"][0]["model_sha256"]
    api.ok("POST", "/api/devices", 201, json={"id": "dev-a", "hardware_class": 1})
    reported = {
        "runtime_version": 0x100,
        "hardware_class": 1,
        "phase": "idle",
        "active_slot": 0,
        "slots": [{"valid": True, "model_sha256": sha, "sequence": 1}],
    }
    api.ctx.messages.handle("tf/dev-a/reported", json.dumps(reported).encode())
    api.ok("POST", "/api/rollouts", 201, json={"name": "r", "model_version_id": mv["id"], "selector": {}})
    m = scrape(api)
    assert m["tinyfleet_devices"] == {(("model", "metered"), ("state", "offline"), ("version", "2.0.0")): 1}
    assert m["tinyfleet_rollouts"] == {(("state", "draft"),): 1}
    assert "tinyfleet_telemetry_ingest_lag_seconds" not in m  # no report stored yet


def test_metrics_need_the_token_unless_public(api):
    assert api.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    bare = api.client.get("/metrics", headers={"Authorization": ""})
    assert bare.status_code == 401 and "\n" not in bare.json()["detail"]
    api.ctx.settings = api.ctx.settings.with_overrides(metrics_public=True)
    assert api.client.get("/metrics", headers={"Authorization": ""}).status_code == 200


def test_json_log_lines_parse():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        apply_format("text")
        assert not isinstance(handler.formatter, JsonFormatter)
        apply_format("json")
        assert isinstance(handler.formatter, JsonFormatter)
        log = logging.getLogger("tinyfleet.test")
        log.warning("device %s said %r", "dev-1", 'quote " and\nnewline')
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        root.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "WARNING" and first["logger"] == "tinyfleet.test"
    assert first["message"] == "device dev-1 said 'quote \" and\\nnewline'"
    assert first["ts"].endswith("Z")
    assert "ValueError: boom" in second["exc_info"]


@pytest.mark.parametrize(("raw", "ok"), [("json", True), ("JSON", True), ("text", True), ("xml", False)])
def test_log_format_setting(raw, ok):
    from tinyfleet.server.config import ConfigError, settings_from_env

    if ok:
        assert settings_from_env({"TINYFLEET_LOG_FORMAT": raw}).log_format == raw.lower()
    else:
        with pytest.raises(ConfigError, match="TINYFLEET_LOG_FORMAT"):
            settings_from_env({"TINYFLEET_LOG_FORMAT": raw})
    assert settings_from_env({"TINYFLEET_METRICS_PUBLIC": "1"}).metrics_public is True


def test_uvicorn_log_config_makes_json_lines():
    import logging.config

    from tinyfleet.server.logs import uvicorn_log_config

    assert uvicorn_log_config("text") is None
    config = uvicorn_log_config("json")
    assert config is not None
    stream = io.StringIO()
    config["handlers"]["default"]["stream"] = stream
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg.handlers[:], lg.propagate, lg.level) for lg in loggers]
    try:
        logging.config.dictConfig(config)
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    finally:
        for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)
    assert json.loads(stream.getvalue())["message"] == "Started server process [42]"
