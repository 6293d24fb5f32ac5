"""`tinyfleet telemetry ...`: inference telemetry per device or model version."""

from __future__ import annotations

import time
from typing import Any

import typer

from tinyfleet.server.cli.client import _table, _ts, _version_id, call, fail, json_option, print_json

telemetry_app = typer.Typer(help="Inference telemetry per device or model version.", no_args_is_help=True)


def _telemetry_params(
    device: str | None, model: str | None, version: str | None, since: float | None, until: float | None
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if device:
        params["device_id"] = device
    if model or version:
        if not (model and version):
            fail("--model and --version go together")
        params["model_version_id"] = _version_id(model, version)
    now = time.time()
    if since is not None:
        params["since"] = now - since
    if until is not None:
        params["until"] = now - until
    return params


SINCE_HELP = "only reports newer than this many seconds ago"
UNTIL_HELP = "only reports older than this many seconds ago"
DEVICE_HELP = "only this device"
MODEL_HELP = "only this model (with --version)"
VERSION_HELP = "only this version x.y.z of --model"


@telemetry_app.command("list")
def telemetry_list(
    device: str | None = typer.Option(None, help=DEVICE_HELP),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    version: str | None = typer.Option(None, help=VERSION_HELP),
    since: float | None = typer.Option(None, help=SINCE_HELP),
    until: float | None = typer.Option(None, help=UNTIL_HELP),
    limit: int = typer.Option(50, help="at most this many reports, newest first"),
    as_json: bool = json_option(),
) -> None:
    """Latest telemetry reports."""
    params = _telemetry_params(device, model, version, since, until) | {"limit": limit}
    rows = call("GET", "/api/telemetry", params=params)
    if as_json:
        print_json(rows)
        return
    _table(
        "telemetry",
        ["time", "device", "model", "inferences", "latency us", "confidence", "errors"],
        [
            [
                _ts(r["ts"]),
                r["device_id"],
                r["model_sha256"][:12],
                r["inference_count"],
                f"{r['latency_us_mean']:.0f}" + ("~" if r["latency_estimated"] else ""),
                f"{r['confidence_mean']:.2f}",
                r["errors"],
            ]
            for r in rows
        ],
    )


@telemetry_app.command("summary")
def telemetry_summary(
    device: str | None = typer.Option(None, help=DEVICE_HELP),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    version: str | None = typer.Option(None, help=VERSION_HELP),
    since: float | None = typer.Option(None, help=SINCE_HELP),
    until: float | None = typer.Option(None, help=UNTIL_HELP),
    as_json: bool = json_option(),
) -> None:
    """Totals and means over a time window."""
    s = call("GET", "/api/telemetry/summary", params=_telemetry_params(device, model, version, since, until))
    if as_json:
        print_json(s)
        return
    _table("telemetry summary", ["what", "value"], [[k, _summary_value(k, v)] for k, v in s.items()])


def _summary_value(key: str, value: Any) -> Any:
    if key in ("since", "until"):
        return _ts(value)
    if isinstance(value, float):
        return f"{value:.0f}" if key.startswith("latency") else f"{value:.3f}"
    return value


METRICS = ("inferences", "errors", "error_rate", "latency", "confidence", "class_share")
RESOLUTIONS = ("raw", "1m", "5m", "1h")
WINDOW_SINCE_HELP = "window start, this many seconds ago (default: an hour before its end)"
WINDOW_UNTIL_HELP = "window end, this many seconds ago (default: now)"


def _window_params(since: float | None, until: float | None) -> dict[str, float]:
    now = time.time()
    params = {}
    if since is not None:
        params["since"] = now - since
    if until is not None:
        params["until"] = now - until
    return params


def _value(metric: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(f"{v:.2f}" for v in value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.0f}" if metric == "latency" else f"{value:.4f}"


@telemetry_app.command("series")
def telemetry_series(
    metric: str = typer.Option(..., help=f"what to plot: {', '.join(METRICS)}"),
    device: str | None = typer.Option(None, help="this device's reports (from raw reports)"),
    model: str | None = typer.Option(
        None, help="with --version: this model version (from per-minute rollups)"
    ),
    version: str | None = typer.Option(None, help="version x.y.z of --model"),
    resolution: str = typer.Option(
        "1m", help=f"one point per report or per bucket: {', '.join(RESOLUTIONS)}"
    ),
    since: float | None = typer.Option(None, help=WINDOW_SINCE_HELP),
    until: float | None = typer.Option(None, help=WINDOW_UNTIL_HELP),
    as_json: bool = json_option(),
) -> None:
    """One metric over time for a model version or a device (points only where there are reports)."""
    if metric not in METRICS:
        fail(f"--metric must be one of {', '.join(METRICS)}")
    if resolution not in RESOLUTIONS:
        fail(f"--resolution must be one of {', '.join(RESOLUTIONS)}")
    if not device and not model:
        fail("give --device or --model with --version")
    params = _telemetry_params(device, model, version, None, None) | _window_params(since, until)
    out = call("GET", "/api/telemetry/series", params=params | {"metric": metric, "resolution": resolution})
    if as_json:
        print_json(out)
        return
    columns = ["time", metric, "reports", "inferences", "errors"] + (
        ["device"] if resolution == "raw" else []
    )
    rows = [
        [_ts(p["t"]), _value(metric, p["value"]), p["reports"], p["inference_count"], p["errors"]]
        + ([p["device_id"]] if resolution == "raw" else [])
        for p in out["points"]
    ]
    _table(f"{metric} per {resolution} ({_ts(out['since'])} .. {_ts(out['until'])})", columns, rows)


COMPARED = (
    ("reports", "reports"),
    ("inferences", "inference_count"),
    ("errors", "errors"),
    ("error rate", "error_rate"),
    ("latency us (mean)", "latency_us_mean"),
    ("confidence (mean)", "confidence_mean"),
    ("class distribution", "class_distribution"),
)


@telemetry_app.command("compare")
def telemetry_compare(
    model: str = typer.Option(..., help="the model both versions belong to"),
    a: str = typer.Option(..., "--a", help="first version x.y.z (e.g. the one running now)"),
    b: str = typer.Option(..., "--b", help="second version x.y.z (e.g. the canary)"),
    since: float | None = typer.Option(None, help=WINDOW_SINCE_HELP),
    until: float | None = typer.Option(None, help=WINDOW_UNTIL_HELP),
    as_json: bool = json_option(),
) -> None:
    """Two versions' telemetry over the same window and how far apart their class distributions are."""
    params = {"a": _version_id(model, a), "b": _version_id(model, b)} | _window_params(since, until)
    out = call("GET", "/api/telemetry/compare", params=params)
    if as_json:
        print_json(out)
        return
    rows: list[list[Any]] = []
    for label, key in COMPARED:
        metric = "latency" if key == "latency_us_mean" else key
        rows.append([label, _value(metric, out["a"][key]), _value(metric, out["b"][key])])
    js = out["js_divergence"]
    rows.append(["JS divergence (0..1)", "-" if js is None else f"{js:.4f}", ""])
    title = f"{model} {a} vs {b} ({_ts(out['since'])} .. {_ts(out['until'])})"
    _table(title, ["what", a, b], rows)
