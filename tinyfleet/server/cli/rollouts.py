"""`tinyfleet rollouts ...`: create, drive and watch rollouts in waves."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from tinyfleet.server.cli.client import (
    _kb,
    _print_actions,
    _table,
    _version_id,
    call,
    console,
    err,
    fail,
    json_option,
    print_json,
)

rollouts_app = typer.Typer(help="Rollouts in waves with health gates and rollback.", no_args_is_help=True)


def _parse_wave(text: str) -> dict[str, Any]:
    try:
        return {"percent": float(text[:-1])} if text.endswith("%") else {"count": int(text)}
    except ValueError:
        fail(f"wave {text!r}: give a count (50) or a percent (10%)")


def _rollout_rows(rollouts: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for r in rollouts:
        by = r["deploy"]["by_state"]
        done = f"{by.get('confirmed', 0)}/{r['deploy']['total']}"
        # Devices a rollback returned to their old model did not fail; the state column says rolled_back.
        failed = sum(by.get(s, 0) for s in ("failed", "timed_out"))
        rows.append(
            [
                r["id"],
                r["name"],
                f"{r['model_name']} {r['version']}",
                r["state"],
                f"{r['current_wave'] + 1}/{len(r['wave_sizes']) or len(r['waves'])}",
                done,
                failed,
                _transfer(r.get("transfer") or {}),
                r["state_reason"],
            ]
        )
    return rows


ROLLOUT_COLUMNS = ["id", "name", "model", "state", "wave", "confirmed", "failed", "sent", "reason"]


def _rollout_table(title: str, rollouts: list[dict[str, Any]]) -> None:
    """The rollouts table; the bytes-sent column only once some rollout has sent packages (narrow
    terminals keep the model name readable for drafts)."""
    rows = _rollout_rows(rollouts)
    if any((r.get("transfer") or {}).get("raw_bytes") for r in rollouts):
        _table(title, ROLLOUT_COLUMNS, rows)
    else:
        drop = ROLLOUT_COLUMNS.index("sent")
        _table(
            title,
            ROLLOUT_COLUMNS[:drop] + ROLLOUT_COLUMNS[drop + 1 :],
            [r[:drop] + r[drop + 1 :] for r in rows],
        )


def _transfer(t: dict[str, Any]) -> str:
    """Bytes sent against the raw packages' total, e.g. '41.0 KiB of 1.2 MiB raw'."""
    if not t.get("raw_bytes"):
        return ""
    return f"{_kb(t['bytes_sent'])} of {_kb(t['raw_bytes'])} raw"


ROLLOUT_ID_HELP = "rollout id"


@rollouts_app.command("list")
def rollouts_list(
    state: str | None = typer.Option(
        None, help="only rollouts in this state (draft, running, paused, completed, ...)"
    ),
    as_json: bool = json_option(),
) -> None:
    """List rollouts, newest first."""
    params = {"state": state} if state else {}
    rollouts = call("GET", "/api/rollouts", params=params)
    if as_json:
        print_json(rollouts)
        return
    _rollout_table("rollouts", rollouts)


@rollouts_app.command("create")
def rollouts_create(
    model: str = typer.Option(..., help="model name"),
    version: str = typer.Option(..., help="version x.y.z"),
    name: str = typer.Option("", help="rollout name (default: model-version)"),
    tag: list[str] = typer.Option([], help="select devices carrying every such tag"),
    group: str | None = typer.Option(None, help="select devices of this group"),
    hardware_class: int | None = typer.Option(None, help="select devices of this hardware class"),
    device: list[str] = typer.Option([], help="select exactly these device ids"),
    wave: list[str] = typer.Option([], help="wave size: count (50) or percent (10%); repeat, in order"),
    success: float = typer.Option(100.0, help="percent of a wave confirmed before the next one"),
    soak: float = typer.Option(0.0, help="seconds to wait after a wave succeeds"),
    fail_count: int | None = typer.Option(None, help="failure threshold: this many failed devices"),
    fail_percent: float | None = typer.Option(None, help="failure threshold: this percent failed"),
    on_failure: str = typer.Option("pause", help="pause or rollback"),
    max_concurrent: int = typer.Option(50, help="devices installing at once"),
    timeout: float | None = typer.Option(None, help="seconds without progress before a device times out"),
    start: bool = typer.Option(False, "--start", help="start at once"),
    skip_incompatible: bool = typer.Option(
        False, "--skip-incompatible", help="leave out devices that would refuse the package (else 409)"
    ),
    canary: bool = typer.Option(
        False, "--canary", help="gate each wave but the last on canary analysis (defaults: README)"
    ),
    canary_window: float | None = typer.Option(None, help="canary: seconds of telemetry compared"),
    canary_min_inferences: int | None = typer.Option(None, help="canary: inferences needed per side"),
    canary_min_devices: int | None = typer.Option(None, help="canary: devices needed per side"),
    canary_on_fail: str | None = typer.Option(None, help="canary: pause or rollback when a metric fails"),
    encrypted: bool = typer.Option(
        False, "--encrypted", help="send the model encrypted, its key wrapped per device (PROTOCOL 6)"
    ),
    as_json: bool = json_option(),
) -> None:
    """Create a rollout of a model version to the selected devices (a draft unless --start)."""
    if fail_count is not None and fail_percent is not None:
        fail("give --fail-count or --fail-percent, not both")
    threshold = {"percent": fail_percent} if fail_percent is not None else {"count": fail_count or 1}
    selector: dict[str, Any] = {"tags": tag, "device_ids": device}
    if group:
        selector["group"] = group
    if hardware_class is not None:
        selector["hardware_class"] = hardware_class
    body: dict[str, Any] = {
        "name": name or f"{model}-{version}",
        "model_version_id": _version_id(model, version),
        "selector": selector,
        "waves": [_parse_wave(w) for w in wave] or [{"percent": 100}],
        "success_threshold_percent": success,
        "soak_seconds": soak,
        "failure_threshold": threshold,
        "failure_action": on_failure,
        "max_concurrent": max_concurrent,
        "start": start,
        "skip_incompatible": skip_incompatible,
    }
    if encrypted:
        body["encrypted"] = True
    if timeout is not None:
        body["action_timeout_seconds"] = timeout
    gate = {
        k: v
        for k, v in (
            ("window_seconds", canary_window),
            ("min_inferences", canary_min_inferences),
            ("min_devices", canary_min_devices),
            ("on_fail", canary_on_fail),
        )
        if v is not None
    }
    if canary or gate:  # any canary option turns the gate on; the server fills in the rest
        body["canary"] = gate
    rollout = call("POST", "/api/rollouts", json=body)
    if as_json:
        print_json(rollout)
    else:
        _rollout_table("rollout", [rollout])
    if not rollout["deploy"]["total"] and not _matching_devices(rollout):
        selector = {k: v for k, v in rollout["selector"].items() if v not in (None, [], "")}
        err.print(
            f"[yellow]warning:[/] rollout {rollout['id']} matches no device"
            f" ({escape(json.dumps(selector) if selector else 'every device')}, with a package of this"
            " version for its hardware class); starting it will fail",
            highlight=False,
        )


def _matching_devices(rollout: dict[str, Any]) -> list[str]:
    """Devices the rollout's selector takes (online or not) that have a package for their hardware class:
    what the server would consider when the rollout starts. A draft's answer has no target count, so it
    is asked of the devices and packages lists."""
    selector = rollout["selector"]
    params: dict[str, Any] = {}
    if selector.get("group") is not None:
        params["group"] = selector["group"]
    if selector.get("hardware_class") is not None:
        params["hardware_class"] = selector["hardware_class"]
    devices = call("GET", "/api/devices", params=params)
    packages = call("GET", "/api/packages", params={"model_version_id": rollout["model_version_id"]})
    classes = {p["hardware_class"] for p in packages}
    ids = set(selector.get("device_ids") or [])
    tags = set(selector.get("tags") or [])
    return [
        d["id"]
        for d in devices
        if d["hardware_class"] in classes and (not ids or d["id"] in ids) and tags <= set(d["tags"])
    ]


@rollouts_app.command("show")
def rollouts_show(
    rollout_id: int = typer.Argument(..., help=ROLLOUT_ID_HELP),
    actions: bool = typer.Option(True, "--actions/--no-actions", help="also list the per-device actions"),
    as_json: bool = json_option(),
) -> None:
    """A rollout with per-device action states."""
    r = call("GET", f"/api/rollouts/{rollout_id}")
    if as_json:
        print_json({**r, "actions": call("GET", f"/api/rollouts/{rollout_id}/actions")} if actions else r)
        return
    _rollout_table(f"rollout {rollout_id}", ([r]))
    console.print(
        f"waves {r['wave_sizes']}  deploy {r['deploy']['by_state']}  rollback {r['rollback']['by_state']}"
    )
    if r.get("encrypted"):
        console.print("encrypted: each device gets the model encrypted, its key wrapped for it alone")
    if r.get("canary"):
        c = r["canary"]
        console.print(
            f"canary gate: window {c['window_seconds']:g} s, at least {c['min_inferences']} inferences"
            f" on {c['min_devices']} device(s) per side, on fail {c['on_fail']},"
            f" without data after {c['max_wait_seconds']:g} s {c['on_not_enough_data']}",
            highlight=False,
        )
    if r.get("gates"):
        _table("canary gates", GATE_COLUMNS, gate_rows(r["gates"]))
        for g in r["gates"]:
            if g["reason"]:
                console.print(f"wave {g['wave'] + 1}: {escape(g['reason'])}", highlight=False)
    if actions:
        _print_actions("device actions", call("GET", f"/api/rollouts/{rollout_id}/actions"))


GATE_COLUMNS = ["wave", "gate", "metric", "verdict", "canary", "control", "threshold", "samples"]


def _gate_value(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "error_rate":
        return f"{100 * value:.2f}%"
    if metric == "latency":
        return f"{value:.0f} us"
    return f"{value:.4f}" if metric == "class_distribution" else f"{value:.3f}"


def _gate_threshold(metric: str, t: float) -> str:
    return {
        "error_rate": f"+{100 * t:.2f} pp",
        "latency": f"+{100 * t:.0f}%",
        "confidence": f"-{t:.3f}",
        "class_distribution": f"JSD {t:.4f}",
    }.get(metric, f"{t:g}")


def gate_rows(gates: list[dict[str, Any]]) -> list[list[Any]]:
    """One row per wave and metric: verdict, canary and control values, threshold, samples
    (canary/control inferences and devices)."""
    rows = []
    for g in gates:
        for metric, m in g["metrics"].items():
            samples = (
                f"{m['canary_samples']}/{m['control_samples']}"
                f" ({m['canary_devices']}/{m['control_devices']} dev)"
            )
            rows.append(
                [
                    g["wave"] + 1,
                    g["verdict"],
                    metric,
                    m["verdict"],
                    _gate_value(metric, m["canary"]),
                    _gate_value(metric, m["control"]),
                    _gate_threshold(metric, m["threshold"]),
                    samples,
                ]
            )
        if not g["metrics"]:  # the window is still open
            rows.append([g["wave"] + 1, g["verdict"], "", "", "", "", "", ""])
    return rows


MOVING_STATES = ("running", "rolling_back")


def _progress_line(r: dict[str, Any]) -> str:
    row = _rollout_rows([r])[0]
    _id, _name, model, state, wave, confirmed, failed, sent, reason = row
    rollback = r["rollback"]["by_state"]
    text = f"{model}  {state}  wave {wave}  confirmed {confirmed}  failed {failed}"
    if rollback:
        text += f"  reverted {rollback.get('confirmed', 0)}/{r['rollback']['total']}"
    if sent:
        text += f"  sent {sent}"
    return text + (f"  ({reason})" if reason else "")


@rollouts_app.command("watch")
def rollouts_watch(
    rollout_id: int = typer.Argument(..., help=ROLLOUT_ID_HELP),
    interval: float = typer.Option(1.0, min=0.1, help="seconds between polls"),
) -> None:
    """Print a rollout's progress whenever it changes, until it stops moving. Exit code 0 only when it
    ends completed; 1 when it ends paused, rolled back or aborted (or is a draft)."""
    last = ""
    while True:
        r = call("GET", f"/api/rollouts/{rollout_id}")
        line = _progress_line(r)
        if line != last:
            console.print(f"{time.strftime('%H:%M:%S')}  {line}", soft_wrap=True, highlight=False)
            last = line
        if r["state"] not in MOVING_STATES:
            break
        time.sleep(interval)
    if r["state"] != "completed":
        reason = f": {r['state_reason']}" if r["state_reason"] else ""
        fail(f"rollout {rollout_id} is {r['state']}, not completed{reason}")


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _confirm_rollback(rollout_id: int) -> None:
    """Ask before a rollback; without a terminal to ask on, --yes is required (never a hang)."""
    if not _stdin_is_terminal():
        fail("rollback needs confirmation: give --yes (stdin is not a terminal)")
    r = call("GET", f"/api/rollouts/{rollout_id}")
    question = (
        f"Roll back rollout {rollout_id} ({r['name']}, {r['model_name']} {r['version']}, {r['state']}):"
        " return every touched device to the model it had?"
    )
    if not typer.confirm(question, default=False):
        fail("not rolled back")


def _command(cmd: str) -> Callable[..., None]:
    def run(
        rollout_id: int = typer.Argument(..., help=ROLLOUT_ID_HELP),
        as_json: bool = json_option(),
    ) -> None:
        r = call("POST", f"/api/rollouts/{rollout_id}/{cmd}")
        show(r, as_json)

    def start(
        rollout_id: int = typer.Argument(..., help=ROLLOUT_ID_HELP),
        skip_incompatible: bool = typer.Option(
            False, "--skip-incompatible", help="leave out devices that would refuse the package (else 409)"
        ),
        as_json: bool = json_option(),
    ) -> None:
        body = {"skip_incompatible": skip_incompatible}
        show(call("POST", f"/api/rollouts/{rollout_id}/start", json=body), as_json)

    def show(r: dict[str, Any], as_json: bool) -> None:
        if as_json:
            print_json(r)
            return
        _rollout_table("rollout", [r])

    def rollback(
        rollout_id: int = typer.Argument(..., help=ROLLOUT_ID_HELP),
        yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
        as_json: bool = json_option(),
    ) -> None:
        if not yes:
            _confirm_rollback(rollout_id)
        run(rollout_id, as_json)

    if cmd == "start":
        start.__doc__ = "Start a draft rollout."
        return start
    if cmd == "rollback":
        rollback.__doc__ = "Return every touched device to the model it had (asks first unless --yes)."
        return rollback

    run.__doc__ = {
        "start": "Start a draft rollout.",
        "pause": "Pause a running rollout.",
        "resume": "Resume a paused rollout.",
        "abort": "Stop a rollout for good.",
        "rollback": "Return every touched device to the model it had.",
    }[cmd]
    return run


for _cmd in ("start", "pause", "resume", "abort", "rollback"):
    rollouts_app.command(_cmd)(_command(_cmd))
