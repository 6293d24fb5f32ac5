"""`tinyfleet demo`: the whole system on one machine, in a few minutes.

1. starts a Mosquitto on a free port (device passwords written by the server, per-device ACL) and the
   control plane (SQLite, MQTT gateway, rollout driver, API);
2. signs three releases of a real TinyML model offline (tinyfleet/demo_models.py) and uploads them;
3. provisions 200 simulated devices, each driving its own instance of the real C runtime;
4. rolls v1 out to all; v2 in three waves behind a canary gate, which compares the first wave's
   inference telemetry with the rest of the fleet's and lets the next waves go; the bad v3, whose
   devices fail their trial self-test until the failure threshold stops the rollout and rolls it back;
   then v4, trained on shuffled labels, which confirms everywhere but fails the same canary gate on
   its telemetry and is rolled back (needs the pipeline's vibration models; skipped without TensorFlow);
5. prints a summary per wave (devices, confirmed, failed, bytes sent, seconds) and per version.
"""

from __future__ import annotations

import logging
import math
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from tinyfleet.demo_models import (
    MODEL_NAME,
    SELFTEST_BAD,
    SILENTLY_WRONG,
    Release,
    build_releases,
    model_files,
)
from tinyfleet.server.devbroker import BrokerError, DevBroker
from tinyfleet.signing.codes import error_name
from tinyfleet.signing.keys import generate_private_key, save_keypair
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import Fleet, FleetConfig, FleetError
from tinyfleet.sim.profiles import FleetMix, get_profile
from tinyfleet.sim.server_api import ServerApi, ServerApiError

SERVER_USER = "tinyfleet-server"
TERMINAL_ROLLOUT = ("completed", "paused", "aborted", "rolled_back")
DONE_ACTION = ("confirmed", "failed", "rolled_back", "timed_out")
# The gate needs telemetry in seconds, not minutes: devices report every 2 s (at most 5 inferences a
# report, MAX_INFERENCES_PER_REPORT), so a first wave of 10% gathers a few hundred in the window.
TELEMETRY_PERIOD_S = 2.0
INFERENCE_HZ = 2.5
GATE_WINDOW_S = 15.0


class DemoError(RuntimeError):
    """A demo step failed; the message says which and why."""


@dataclass
class WaveResult:
    rollout: str
    wave: str
    devices: int = 0
    confirmed: int = 0
    failed: int = 0
    cancelled: int = 0  # stopped by a rollback before finishing (shown as "stopped")
    bytes_sent: int = 0
    seconds: float = 0.0


@dataclass
class DemoReport:
    waves: list[WaveResult] = field(default_factory=list)
    rollout_states: dict[str, str] = field(default_factory=dict)
    final_versions: dict[str, int] = field(default_factory=dict)
    # Per release version: the server's telemetry summary (GET /api/telemetry/summary?model_version_id).
    telemetry: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per gated rollout: its canary gates as GET /api/rollouts/{id} shows them.
    gates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class DemoOptions:
    devices: int = 200
    processes: int | None = None
    keep: bool = False
    workdir: Path | None = None
    timeout_per_rollout: float = 240.0


# ----- the embedded stack ---------------------------------------------------------------------------------


@dataclass
class Embedded:
    broker: DevBroker
    api: ServerApi
    server_url: str
    server: Any
    workdir: Path
    release_pub: Path


@contextmanager
def embedded_stack(
    workdir: Path, release_pub: Path, console: Console, tick_seconds: float = 0.25
) -> Iterator[Embedded]:
    """Broker + control plane, torn down in reverse order. The server keeps the broker's password file
    (device credentials); the demo sends the broker SIGHUP after provisioning so that it re-reads it."""
    from tinyfleet.server.services.credentials import hash_password, write_password_file
    from tinyfleet.server.stack import run_stack

    server_password = secrets.token_urlsafe(18)
    password_file = workdir / "mosquitto.passwd"
    # The gateway's own account must exist before the broker starts, or its first connection is refused.
    write_password_file(password_file, [(SERVER_USER, hash_password(server_password))])
    with ExitStack() as stack:
        broker = stack.enter_context(DevBroker(password_file=password_file, admin_users=[SERVER_USER]))
        console.print(f"[green]✓[/] mosquitto on {broker.url} (per-device passwords and ACL)")
        mqtt_url = f"mqtt://{SERVER_USER}:{server_password}@{broker.host}:{broker.port}"
        server = stack.enter_context(
            run_stack(
                mqtt_url,
                data_dir=workdir / "server",
                mqtt_password_file=password_file,
                trusted_key_paths=(release_pub,),
                tick_seconds=tick_seconds,
            )
        )
        console.print(f"[green]✓[/] control plane on {server.url} (SQLite in {workdir / 'server'})")
        api = stack.enter_context(ServerApi(server.url, server.token))
        yield Embedded(broker, api, server.url, server, workdir, release_pub)


# ----- rollouts with live progress --------------------------------------------------------------------------


def _failed(action: dict[str, Any]) -> bool:
    """Failed on the device (its error code survives when a rollback later stands the action down)."""
    return action["state"] in ("failed", "timed_out") or bool(action["error_code"])


def _wave_results(name: str, rollout: dict[str, Any], actions: list[dict[str, Any]]) -> list[WaveResult]:
    results = []
    for wave, size in enumerate(rollout.get("wave_sizes") or []):
        mine = [a for a in actions if a["wave"] == wave and a["purpose"] == "deploy"]
        started = [a["notified_at"] or a["created_at"] for a in mine if a["state"] != "queued"]
        ended = [a["updated_at"] for a in mine if a["state"] in DONE_ACTION]
        r = WaveResult(name, f"wave {wave + 1}", devices=size)
        r.confirmed = sum(a["state"] == "confirmed" for a in mine)
        r.failed = sum(_failed(a) for a in mine)
        r.cancelled = sum(a["state"] == "rolled_back" and not _failed(a) for a in mine)
        r.bytes_sent = sum(a["bytes_received"] for a in mine)
        r.seconds = max(ended) - min(started) if started and ended else 0.0
        results.append(r)
    rollback = [a for a in actions if a["purpose"] == "rollback"]
    if rollback:
        r = WaveResult(name, "rollback", devices=len(rollback))
        r.confirmed = sum(a["state"] == "confirmed" for a in rollback)
        r.failed = sum(a["state"] in ("failed", "timed_out") for a in rollback)
        r.bytes_sent = sum(a["bytes_received"] for a in rollback)
        times = [a["updated_at"] for a in rollback] + [a["created_at"] for a in rollback]
        r.seconds = max(times) - min(times)
        results.append(r)
    return results


def run_rollout(
    api: ServerApi,
    console: Console,
    name: str,
    version_id: int,
    waves: list[dict[str, Any]],
    timeout: float,
    **options: Any,
) -> tuple[dict[str, Any], list[WaveResult]]:
    """Create and start a rollout, show one bar per wave until it settles, return its final state."""
    rollout = api.create_rollout(name=name, model_version_id=version_id, waves=waves, start=True, **options)
    rid = rollout["id"]
    columns = (
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[int, TaskID] = {}
        rollback_task: TaskID | None = None
        while True:
            rollout = api.rollout(rid)
            actions = api.rollout_actions(rid)
            for wave, size in enumerate(rollout["wave_sizes"]):
                if wave not in tasks:
                    tasks[wave] = progress.add_task(f"{name} wave {wave + 1}", total=size, detail="")
                mine = [a for a in actions if a["wave"] == wave and a["purpose"] == "deploy"]
                ok = sum(a["state"] == "confirmed" for a in mine)
                bad = sum(_failed(a) for a in mine)
                down = sum(a["state"] == "rolled_back" and not _failed(a) for a in mine)
                busy = sum(a["state"] in ("notified", "downloading", "verifying", "trial") for a in mine)
                detail = f"[green]{ok} ok[/] [red]{bad} failed[/] {down} stopped, {busy} in flight"
                progress.update(tasks[wave], total=size, completed=ok + bad + down, detail=detail)
            back = [a for a in actions if a["purpose"] == "rollback"]
            if back:
                if rollback_task is None:
                    rollback_task = progress.add_task(f"{name} rollback", total=len(back), detail="")
                done = sum(a["state"] in DONE_ACTION for a in back)
                progress.update(
                    rollback_task, total=len(back), completed=done, detail="reverting, no download"
                )
            if rollout["state"] in TERMINAL_ROLLOUT:
                break
            if time.monotonic() > deadline:
                raise DemoError(f"rollout {name} still {rollout['state']} after {timeout:.0f} s")
            time.sleep(0.5)
    reason = f" ({rollout['state_reason']})" if rollout.get("state_reason") else ""
    console.print(f"rollout [bold]{name}[/]: {rollout['state']}{reason}")
    codes = Counter(a["error_code"] for a in actions if a["error_code"])
    if codes:
        listed = ", ".join(f"{error_name(c)} ({c}) x{n}" for c, n in sorted(codes.items()))
        console.print(f"  errors reported by the devices' runtimes: {listed}")
    return rollout, _wave_results(name, rollout, actions)


def canary_config(devices: int) -> dict[str, Any]:
    """The demo's gate: a short window, a minimum sample the first wave (10%) reaches in it, and
    thresholds loose enough for a good release's sampling noise yet far inside a useless model's drop."""
    first_wave = max(1, round(devices / 10))
    return {
        "window_seconds": GATE_WINDOW_S,
        "min_inferences": 20 * first_wave,
        "min_devices": max(1, first_wave // 2),
        "confidence_max_drop": 0.10,
        "class_jsd_max": 0.10,
        "max_wait_seconds": 60.0,
        "on_fail": "rollback",
    }


def _metric_line(metric: str, m: dict[str, Any]) -> str:
    verdict = {"pass": "[green]pass[/]", "fail": "[red bold]FAIL[/]"}.get(m["verdict"], m["verdict"])
    sizes = f"{m['canary_samples']} vs {m['control_samples']} samples on"
    sizes += f" {m['canary_devices']} vs {m['control_devices']} devices"
    if m["verdict"] == "not_enough_data":
        return f"    {metric:<18} {verdict}: {sizes}"
    if metric == "class_distribution":
        numbers = f"JSD {m['canary']:.4f} (max {m['threshold']:.2f})"
    elif metric == "error_rate":
        numbers = f"canary {100 * m['canary']:.2f}% vs control {100 * m['control']:.2f}%"
    elif metric == "latency":
        numbers = f"canary {m['canary']:.0f} us vs control {m['control']:.0f} us"
    else:
        numbers = f"canary {m['canary']:.3f} vs control {m['control']:.3f} (max drop {m['threshold']:.2f})"
    return f"    {metric:<18} {verdict}: {numbers}; {sizes}"


def print_gates(console: Console, rollout: dict[str, Any]) -> None:
    """Each gated wave's verdict and, per metric, the canary and control numbers behind it."""
    for gate in rollout.get("gates") or []:
        console.print(f"  canary gate wave {gate['wave'] + 1}: [bold]{gate['verdict']}[/]")
        for metric, m in (gate.get("metrics") or {}).items():
            console.print(_metric_line(metric, m))


def summary_table(report: DemoReport) -> Table:
    """Per wave: devices, confirmed, failed, stood down (told to stop by a rollback), bytes, seconds."""
    table = Table(
        title="tinyfleet demo: rollouts",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    columns = ("rollout", "wave", "devices", "confirmed", "failed", "stopped", "bytes sent", "seconds")
    for column in columns:
        table.add_column(column, justify="left" if column in ("rollout", "wave") else "right", no_wrap=True)
    for r in report.waves:
        table.add_row(
            r.rollout,
            r.wave,
            str(r.devices),
            str(r.confirmed),
            str(r.failed),
            str(r.cancelled),
            f"{r.bytes_sent:,}",
            f"{r.seconds:.1f}",
        )
    return table


def telemetry_table(report: DemoReport) -> Table:
    """Per release: the devices' inference telemetry as the server summarises it (runtime counters)."""
    table = Table(
        title="inference telemetry per version", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False
    )
    for column in ("version", "devices", "inferences", "errors", "top-1 histogram", "mean conf.", "latency"):
        table.add_column(column, justify="left" if column in ("version", "top-1 histogram") else "right")
    for version, t in report.telemetry.items():
        latency = "-"
        if t.get("latency_us_mean") is not None:
            latency = f"{t['latency_us_mean']:.0f} us" + (" est." if t.get("latency_estimated") else "")
        conf = t.get("confidence_mean")
        table.add_row(
            version,
            str(t["devices"]),
            str(t["inference_count"]),
            str(t["errors"]),
            " / ".join(str(n) for n in t["class_histogram"]) or "-",
            "-" if conf is None else f"{conf:.3f}",
            latency,
        )
    return table


def collect_telemetry(
    api: ServerApi, releases: list[Release], version_ids: list[int], wait_for: int, timeout: float
) -> dict[str, dict[str, Any]]:
    """Each release's telemetry summary, waiting (up to timeout) until release wait_for has some."""
    deadline = time.monotonic() + timeout
    while True:
        summaries = {
            r.version: api.telemetry_summary(model_version_id=v)
            for r, v in zip(releases, version_ids, strict=True)
        }
        if summaries[releases[wait_for].version]["inference_count"] > 0 or time.monotonic() > deadline:
            return summaries
        time.sleep(0.5)


# ----- the demo --------------------------------------------------------------------------------------------


def _upload(api: ServerApi, model_id: int, release: Release, hardware_class: int, offline: bool) -> int:
    """Releases whose self-test holds (v4 too: its fault is in the field) go up as .tflite: the server
    signs them, so it may also send them as deltas.
    The bad release goes up as the offline-signed package (its wrong self-test expectation is the point;
    the server would compute the right one)."""
    if offline:
        package = api.upload_package(release.package, notes=release.label, allow_selftest_mismatch=True)
        return int(package["model_version_id"])
    version = api.upload_tflite(
        model_id, release.model, version=release.version, hardware_class=hardware_class, notes=release.label
    )
    return int(version["id"])


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoReport:
    console = console or Console()
    report = DemoReport()
    with ExitStack() as stack:
        if options.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinyfleet-demo-")))
        else:
            workdir = options.workdir
            workdir.mkdir(parents=True, exist_ok=True)
        console.rule("[bold]1. offline signing")
        release_key = generate_private_key()
        _pem, pub = save_keypair(workdir / "release", release_key)
        profile = replace(
            get_profile("lan"), telemetry_period_s=TELEMETRY_PERIOD_S, inference_hz=INFERENCE_HZ
        )
        with console.status("building the models (the pipeline trains them on a first run, then caches)"):
            releases = build_releases(release_key, profile.hardware_class)
        _, source = model_files()
        for r in releases:
            size = f"{len(r.package):,} bytes"
            console.print(f"signed [bold]{r.version}[/] ({r.label}): {size}, model {r.model_sha256[:12]}…")
        console.print(f"models from {source}; release key id {_kid(release_key)}")

        console.rule("[bold]2. embedded stack")
        env = stack.enter_context(embedded_stack(workdir, pub, console))
        api = env.api
        model_id = int(api.ensure_model(MODEL_NAME, "demo model, three releases")["id"])
        api.put_hardware_class(profile)
        # 3.0.0 last: the server gives a .tflite the model's highest security counter so far, and the
        # offline package's counter (1) on 4.0.0 would raise the devices' floor above 2.0.0's (0) and
        # forbid the rollback to it.
        order = [i for i in range(len(releases)) if i != SELFTEST_BAD] + [SELFTEST_BAD]
        ids = {
            i: _upload(api, model_id, releases[i], profile.hardware_class, offline=i == SELFTEST_BAD)
            for i in order
        }
        version_ids = [ids[i] for i in range(len(releases))]
        console.print(
            "[green]✓[/] uploaded 1.0.0, 2.0.0 (and 4.0.0) as .tflite (checked on the C engine, signed by"
            " the server, sent as deltas where smaller) and 3.0.0 as its offline-signed package"
            " (verified by the trust store)"
        )

        console.rule(f"[bold]3. {options.devices} simulated devices")
        with console.status(f"provisioning {options.devices} devices"):
            specs, provisioned = provision_fleet(
                api, options.devices, FleetMix.single(profile), "demo", "demo"
            )
        env.broker.reload()
        first = provisioned[0]
        config = FleetConfig(env.broker.host, env.broker.port, first.trusted_keys, tuple(specs))
        fleet = Fleet(config, processes=options.processes)
        stack.callback(fleet.stop)
        fleet.start()
        if not fleet.wait_online(timeout=120):
            raise DemoError("not every simulated device came online within 120 s")
        deadline = time.monotonic() + 60
        while sum(d["online"] for d in api.devices(group="demo")) < options.devices:
            if time.monotonic() > deadline:
                raise DemoError("the server did not see every device online within 60 s")
            time.sleep(0.2)
        console.print(f"[green]✓[/] {options.devices} devices online in {fleet.processes} process(es)")

        console.rule("[bold]4. rollouts")
        # Stop the bad release within its first wave (10% of the fleet): 5 failures, fewer on a tiny fleet.
        threshold = max(1, min(5, math.ceil(options.devices / 10) // 2))
        three_waves = [{"percent": 10}, {"percent": 30}, {"percent": 60}]
        # The gate compares class histograms and confidences: only the vibration classifier has them.
        gated = len(releases) > SILENTLY_WRONG
        gate: dict[str, Any] = {"canary": canary_config(options.devices)} if gated else {}
        plan = [
            ("v1", version_ids[0], [{"percent": 100}], {}),
            ("v2", version_ids[1], three_waves, gate),
            (
                "v3-bad",
                version_ids[SELFTEST_BAD],
                three_waves,
                {"failure_threshold": {"count": threshold}, "failure_action": "rollback"},
            ),
        ]
        if gated:
            plan.append(("v4-wrong", version_ids[SILENTLY_WRONG], three_waves, gate))
        else:
            console.print(
                "[yellow]canary gate part skipped:[/] TensorFlow is unavailable, and the fallback"
                " hello_world models have no class outputs for the gate to compare"
            )
        for name, vid, waves, extra in plan:
            rollout, results = run_rollout(
                api, console, name, vid, waves, options.timeout_per_rollout, **extra
            )
            report.rollout_states[name] = rollout["state"]
            report.waves += results
            if rollout.get("gates"):
                report.gates[name] = rollout["gates"]
                print_gates(console, rollout)

        versions: dict[str, int] = {}
        for device in api.devices(group="demo"):
            sha = device.get("active_model_sha256") or "none"
            label = next((r.version for r in releases if r.model_sha256 == sha), sha[:12])
            versions[label] = versions.get(label, 0) + 1
        report.final_versions = versions
        # Devices report every telemetry period; give the fleet one period to report on its final model.
        with console.status("waiting for inference telemetry on the final version"):
            report.telemetry = collect_telemetry(
                api, releases, version_ids, 1, profile.telemetry_period_s * 2 + 5
            )

        console.rule("[bold]5. summary")
        console.print(summary_table(report))
        console.print(telemetry_table(report))
        console.print(
            "devices per active model: " + ", ".join(f"{k}: {v}" for k, v in sorted(versions.items()))
        )
        if options.keep:
            console.print(
                f"[bold]server up at {env.server_url}[/] (API token: {env.server.token}); Ctrl-C stops"
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                console.print("stopping")
    return report


def _kid(key: Any) -> str:
    from tinyfleet.signing.keys import key_id

    return key_id(key).hex()


def main(keep: bool = False, devices: int = 200, processes: int | None = None) -> int:
    """`tinyfleet demo`: the signing walk-through first, then the fleet demo. Returns the exit code."""
    from tinyfleet.signing.demo import run as signing_walkthrough

    # The server's warnings (its generated development key, rollout decisions) would tear the live
    # progress bars; the demo prints each rollout's outcome and reason itself. Errors still show.
    logging.basicConfig(level=logging.ERROR)
    console = Console(highlight=False)
    console.rule("[bold]0. signing walk-through")
    if signing_walkthrough() != 0:
        console.print("[red]the signing walk-through did not behave as expected[/]")
        return 1
    try:
        report = run_demo(DemoOptions(devices=devices, processes=processes, keep=keep), console)
    except (DemoError, ServerApiError, BrokerError, FleetError) as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    expected = {"v1": "completed", "v2": "completed", "v3-bad": "rolled_back"}
    if "v4-wrong" in report.rollout_states:
        expected["v4-wrong"] = "rolled_back"
    if report.rollout_states != expected:
        console.print(f"[red]unexpected rollout outcomes:[/] {report.rollout_states}")
        return 1
    return 0
