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
