"""`tinyfleet simulate`: provision N simulated devices on a running server and run them until stopped.

The server is `--api` or TINYFLEET_API_URL, the token TINYFLEET_API_TOKEN, as for every other command.
It never takes over a device it did not create: if one of its ids exists already it stops before
changing anything, unless `--take-over` says to re-issue those devices' credentials.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tinyfleet.sim.fleet import DeviceSpec, Fleet, FleetConfig, FleetSnapshot
from tinyfleet.sim.profiles import FleetMix
from tinyfleet.sim.server_api import (
    DEFAULT_TOKEN,
    DEFAULT_URL,
    DeviceExistsError,
    ProvisionedDevice,
    ServerApi,
    ServerApiError,
)

# A QEMU device is one emulator process (and its share of a core while it computes): keep them few.
MAX_QEMU_DEVICES = 8

simulate_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _fail(message: str) -> None:
    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse_mqtt_override(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"--mqtt must look like mqtt://host:port, got {url!r}")
    try:
        return parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise ValueError(f"--mqtt has an invalid port: {url!r}") from None


def parse_mqtt_overrides(value: str) -> tuple[tuple[str, int], ...]:
    """--mqtt: one broker URL, or a comma-separated list (every node of a cluster, issue 16)."""
    return tuple(parse_mqtt_override(u.strip()) for u in value.split(",") if u.strip())


BULK_BATCH = 10_000  # the server's most devices per bulk call (schemas.MAX_BULK_DEVICES)


def device_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index:05d}" for index in range(count)]


def provision_fleet(
    api: ServerApi,
    count: int,
    mix: FleetMix,
    prefix: str,
    group: str | None,
    seed: int = 0,
    on_progress: Callable[[int], None] | None = None,
    *,
    take_over: bool = False,
) -> tuple[list[DeviceSpec], list[ProvisionedDevice]]:
    """Provision devices `{prefix}-00000`..; returns agent specs and what the server answered.

    New devices are created by bulk calls (BULK_BATCH per call, each all or nothing). Without take_over,
    any of those ids existing already raises `DeviceExistsError` and leaves the server as it was: checked
    before the first call, and should one appear meanwhile, the devices created by earlier calls are
    deleted again. With take_over, existing devices get new credentials (one call each)."""
    ids = device_ids(prefix, count)
    existing = set(api.existing_device_ids(ids))
    if existing and not take_over:
        raise DeviceExistsError([d for d in ids if d in existing])
    profiles = mix.assign(count, seed)
    bodies = [
        {
            "id": d,
            "hardware_class": p.hardware_class,
            "tags": [f"profile:{p.name}"],
            **({"group": group} if group else {}),
        }
        for d, p in zip(ids, profiles, strict=True)
    ]
    got: dict[str, ProvisionedDevice] = {}
    fresh = [b for b in bodies if b["id"] not in existing]
    for i in range(0, len(fresh), BULK_BATCH):
        try:
            batch = api.provision_bulk(fresh[i : i + BULK_BATCH])
        except DeviceExistsError:
            for device_id in got:  # another client took an id since the check: undo ours
                if device_id not in existing:
                    api.delete_device(device_id)
            raise
        got.update((d.device_id, d) for d in batch)
        if on_progress is not None:
            on_progress(len(got))
    for device_id, profile in zip(ids, profiles, strict=True):
        if device_id in existing:
            tags = [f"profile:{profile.name}"]
            got[device_id] = api.provision(device_id, profile.hardware_class, group, tags, take_over=True)
            if on_progress is not None:
                on_progress(len(got))
    provisioned = [got[d] for d in ids]
    specs = [
        DeviceSpec(
            g.device_id,
            p,
            g.username,
            g.password,
            seed=seed * 100003 + index,
            cert_pem=g.cert_pem,
            key_pem=g.key_pem,
            ca_pem=g.ca_pem,
            encryption_key=g.encryption_key,
        )
        for index, (g, p) in enumerate(zip(provisioned, profiles, strict=True))
    ]
    return specs, provisioned


def run_on_qemu(specs: list[DeviceSpec], count: int) -> list[DeviceSpec]:
    """The first count devices run the real firmware under QEMU. Their profile keeps everything but the
    power-cut injection, which only the host library offers in a fleet."""
    if not 0 <= count <= min(len(specs), MAX_QEMU_DEVICES):
        raise ValueError(f"--qemu must be within 0..{min(len(specs), MAX_QEMU_DEVICES)}, got {count}")
    out = list(specs)
    for i in range(count):
        profile = out[i].profile
        faults = replace(profile.faults, power_cut_during_install=0.0)
        out[i] = replace(out[i], qemu=True, profile=replace(profile, faults=faults))
    return out


def describe_ids(ids: tuple[str, ...] | list[str], shown: int = 3) -> str:
    """'a, b, c' or, for many, 'a, b, c, ... z (50 devices)'."""
    if len(ids) <= shown + 1:
        return ", ".join(ids)
    return f"{', '.join(ids[:shown])}, ... {ids[-1]} ({len(ids)} devices)"


def _table(snap: FleetSnapshot, started: float) -> Table:
    table = Table(title=f"simulated fleet ({time.monotonic() - started:.0f} s)")
    for column in (
        "devices",
        "online",
        "installs",
        "failed",
        "reverts",
        "chunk KiB",
        "power cuts",
        "malformed",
    ):
        table.add_column(column, justify="right")
    t = snap.totals
    table.add_row(
        str(snap.devices),
        str(snap.online),
        str(t.get("installs_confirmed", 0)),
        str(t.get("installs_failed", 0)),
        str(t.get("reverts", 0)),
        f"{t.get('chunk_bytes', 0) / 1024:.1f}",
        str(t.get("power_cuts", 0)),
        str(t.get("malformed", 0)),
    )
    return table


@simulate_app.command("simulate")
def simulate(
    devices: int = typer.Option(
        10, "--devices", "-n", min=1, max=100_000, help="number of simulated devices"
    ),
    server: str = typer.Option(
        DEFAULT_URL,
        "--api",
        "--server",
        envvar="TINYFLEET_API_URL",
        help="control plane base URL",
    ),
    token: str = typer.Option(DEFAULT_TOKEN, envvar="TINYFLEET_API_TOKEN", help="API token"),
    mqtt: str | None = typer.Option(
        None,
        help="broker URL override (default: what provisioning returns); a comma-separated list for a"
        " cluster: devices are spread round robin and move to the next node when theirs is down",
    ),
    mqtt_protocol: str = typer.Option("3.1.1", help="MQTT version the devices speak: 3.1.1 or 5"),
    profile: str = typer.Option("lan", help="profile name or weighted mix, e.g. 'lan:0.9,flaky:0.1'"),
    prefix: str = typer.Option(
        "sim", help="device id prefix: devices are {prefix}-00000, {prefix}-00001, .."
    ),
    take_over: bool = typer.Option(
        False,
        "--take-over",
        help="if some of the device ids exist already, re-issue their credentials and run them here"
        " (whatever uses them now goes offline for good)",
    ),
    group: str | None = typer.Option("sim", help="device group set at provisioning"),
    processes: int = typer.Option(0, min=0, help="worker processes (0: one per core)"),
    duration: float = typer.Option(0.0, min=0.0, help="seconds to run (0: until Ctrl-C)"),
    seed: int = typer.Option(0, help="seed for profile assignment and fault injection"),
    qemu: int = typer.Option(
        0,
        min=0,
        max=MAX_QEMU_DEVICES,
        help="how many of the devices run the real firmware under QEMU (one emulator process each)",
    ),
) -> None:
    """Provision N simulated devices (real C runtime each) on a running server and keep them online."""
    console = Console()
    try:
        mix = FleetMix.parse(profile)
        overrides = parse_mqtt_overrides(mqtt) if mqtt else ()
        if mqtt_protocol not in ("3.1.1", "5"):
            raise ValueError(f"--mqtt-protocol must be 3.1.1 or 5, got {mqtt_protocol!r}")
    except ValueError as exc:
        _fail(str(exc))
        return
    if qemu > devices:
        _fail(f"--qemu {qemu} is more than --devices {devices}")
        return
    if qemu:
        from tinyfleet.sim.qemu_transport import qemu_unavailable

        reason = qemu_unavailable()
        if reason is not None:
            _fail(f"--qemu needs QEMU and the firmware build: {reason}")
            return
    with ServerApi(server, token) as api:
        try:
            if take_over:
                taken = api.existing_device_ids(device_ids(prefix, devices))
                if taken:
                    console.print(
                        f"taking over {describe_ids(taken)}: new credentials, the old ones stop working",
                        soft_wrap=True,
                    )
            with console.status(f"provisioning {devices} devices on {server}"):
                specs, provisioned = provision_fleet(
                    api, devices, mix, prefix, group, seed, take_over=take_over
                )
        except DeviceExistsError as exc:
            _fail(
                f"{describe_ids(exc.device_ids)} already exist on {api.base_url}; simulate does not take"
                f" over devices it did not create: use --prefix with another name, or --take-over to"
                f" re-issue their credentials (whatever uses them now goes offline)"
            )
            return
        except ServerApiError as exc:
            hint = " (set --api or TINYFLEET_API_URL)" if exc.status is None else ""
            _fail(f"{exc}{hint}")
            return
    first = provisioned[0]
    host, port = overrides[0] if overrides else (first.mqtt_host, first.mqtt_port)
    if host is None or port is None:
        _fail("the server gave no MQTT address (it runs without a broker); pass --mqtt mqtt://host:port")
        return
    config = FleetConfig(
        host,
        port,
        first.trusted_keys,
        tuple(run_on_qemu(specs, qemu)),
        mqtt_protocol=mqtt_protocol,
        brokers=overrides if len(overrides) > 1 else (),
    )
    fleet = Fleet(config, processes=processes or None)
    on_qemu = f" ({qemu} under QEMU)" if qemu else ""
    console.print(
        f"starting {devices} devices{on_qemu} in {fleet.processes} process(es), broker {host}:{port}"
    )
    started = time.monotonic()
    # `kill`, `timeout`, systemd and docker stop with SIGTERM: stop the fleet as for Ctrl-C, or its worker
    # processes would outlive this one.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    last: FleetSnapshot | None = None
    try:
        fleet.start(timeout=max(120.0, devices / 20))
        last = fleet.snapshot()
        with Live(_table(last, started), console=console, refresh_per_second=2) as live:
            while not duration or time.monotonic() - started < duration:
                time.sleep(1.0)
                last = fleet.snapshot()
                live.update(_table(last, started))
    except KeyboardInterrupt:
        console.print("stopping the fleet")
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    finally:
        fleet.stop()
        signal.signal(signal.SIGTERM, previous)
    if last is not None:
        if not console.is_terminal:
            console.print()  # off a terminal the live table's last frame ends without a newline
        console.print(summary(last, time.monotonic() - started), soft_wrap=True)


def summary(snap: FleetSnapshot, seconds: float) -> str:
    """One line for the end of a run: how many devices were online and what they installed."""
    t = snap.totals
    return (
        f"ran {snap.devices} devices for {seconds:.0f} s: {snap.online} online at the end,"
        f" {t.get('installs_confirmed', 0)} installs confirmed, {t.get('installs_failed', 0)} failed,"
        f" {t.get('chunk_bytes', 0) / 1024:.1f} KiB of chunks received, {t.get('power_cuts', 0)} power cuts"
    )
