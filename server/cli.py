"""Control-plane commands: `tinyfleet server|models|packages|devices|rollouts|telemetry ...`.

Everything but `server run` / `server migrate` talks to a running server over HTTP (TINYFLEET_API_URL,
TINYFLEET_API_TOKEN). Any API error is printed as one line with the server's message; exit code 1.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from contextlib import ExitStack

    from server.config import Settings

console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width

server_app = typer.Typer(
    help="Run the control plane (API, MQTT gateway, rollout engine).", no_args_is_help=True
)
models_app = typer.Typer(help="Model registry: models, versions (upload a .tflite).", no_args_is_help=True)
packages_app = typer.Typer(help="Signed packages on the server.", no_args_is_help=True)
devices_app = typer.Typer(help="Devices: provision, label, inspect.", no_args_is_help=True)
rollouts_app = typer.Typer(help="Rollouts in waves with health gates and rollback.", no_args_is_help=True)
telemetry_app = typer.Typer(help="Inference telemetry per device or model version.", no_args_is_help=True)

DEFAULT_URL = "http://127.0.0.1:8000"


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


# --- HTTP -------------------------------------------------------------------------------------------


def _client() -> httpx.Client:
    from server.config import DEFAULT_API_TOKEN

    url = os.environ.get("TINYFLEET_API_URL", DEFAULT_URL).rstrip("/")
    token = os.environ.get("TINYFLEET_API_TOKEN", DEFAULT_API_TOKEN)
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def call(method: str, path: str, **kwargs: Any) -> Any:
    """One API call; errors become one line (server message, or why the server is unreachable)."""
    with _client() as client:
        try:
            resp = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the server at {client.base_url}: {exc} (set TINYFLEET_API_URL)")
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text.strip() or resp.reason_phrase
        fail(f"{method} {path}: {resp.status_code} {detail}")
    if resp.status_code == 204 or not resp.content:
        return None
    if resp.headers.get("content-type", "").startswith("application/json"):
        return resp.json()
    return resp.content


def _ts(value: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value)) if value else "-"


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    console.print(table)


def _model_id(name: str) -> int:
    for model in call("GET", "/api/models"):
        if model["name"] == name:
            return int(model["id"])
    fail(f"model {name!r} not found")


def _version_id(model: str, version: str) -> int:
    for v in call("GET", f"/api/models/{_model_id(model)}/versions"):
        if v["version"] == version:
            return int(v["id"])
    fail(f"model {model!r} has no version {version!r}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")


# --- server -----------------------------------------------------------------------------------------


@server_app.command("run")
def server_run(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, min=1, max=65535),
    broker: bool = typer.Option(
        False, "--broker", help="also start and manage a Mosquitto (device passwords, ACL, reloads)"
    ),
    broker_host: str = typer.Option("127.0.0.1", help="with --broker: address the broker listens on"),
    broker_port: int = typer.Option(0, min=0, max=65535, help="with --broker: its port (0: a free one)"),
) -> None:
    """Run API + MQTT gateway + rollout engine with settings from TINYFLEET_* variables."""
    import logging
    from contextlib import ExitStack

    import uvicorn

    from server.app import create_app
    from server.config import ConfigError, settings_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter on every start
    with ExitStack() as stack:
        try:
            settings = settings_from_env()
            if broker:
                settings = _managed_broker(stack, settings, broker_host, broker_port)
            app = create_app(settings)
        except ConfigError as exc:
            fail(str(exc))
        console.print(
            f"tinyfleet control plane on http://{host}:{port} (OpenAPI at /docs, dashboard at /)",
            soft_wrap=True,
        )
        # uvicorn re-raises the SIGTERM it stopped on once it is done; with the default action the process
        # would die right there, leaving the broker it manages running. Leave through the ExitStack instead.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            uvicorn.run(app, host=host, port=port, log_level="info")
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _managed_broker(stack: ExitStack, settings: Settings, host: str, port: int) -> Settings:
    """Start a Mosquitto that lives as long as the server, authenticating devices with the password file
    the server writes; its pid file lets the server reload it after every new credential."""
    import secrets

    from server.config import ConfigError
    from server.services.credentials import hash_password, write_password_file
    from simulator.broker import Broker, BrokerError

    if settings.mqtt_url:
        raise ConfigError("give --broker or TINYFLEET_MQTT_URL, not both")
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    password_file = settings.mqtt_password_file or data_dir / "mosquitto.passwd"
    pid_file = data_dir / "mosquitto.pid"
    user = settings.mqtt_client_id
    password = secrets.token_urlsafe(18)
    # The gateway's account must be in the file before the broker starts; the server rewrites the file
    # (devices + this account) at start.
    write_password_file(password_file, [(user, hash_password(password))])
    try:
        running = stack.enter_context(
            Broker(host, port or None, password_file=password_file, admin_users=[user])
        )
    except BrokerError as exc:
        raise ConfigError(str(exc)) from None
    pid_file.write_text(f"{running.pid}\n", encoding="ascii")
    stack.callback(pid_file.unlink, missing_ok=True)
    console.print(
        f"mosquitto on {running.url} (pid {running.pid}, passwords in {password_file})", soft_wrap=True
    )
    return settings.with_overrides(
        mqtt_url=f"mqtt://{user}:{password}@{running.host}:{running.port}",
        mqtt_password_file=password_file,
        mqtt_broker_pid_file=pid_file,
    )


@server_app.command("migrate")
def server_migrate() -> None:
    """Bring the database (TINYFLEET_DATABASE_URL) to the latest schema."""
    from server.config import ConfigError, settings_from_env
    from server.db import make_engine, upgrade_to_head

    try:
        settings = settings_from_env()
    except ConfigError as exc:
        fail(str(exc))
    engine = make_engine(settings.database_url)
    upgrade_to_head(engine)
    engine.dispose()
    console.print("database schema is at head")


@server_app.command("status")
def server_status() -> None:
    """Health, MQTT connection and gateway counters of a running server."""
    health = call("GET", "/healthz")
    stats = call("GET", "/api/gateway/stats")
    rows = [
        ["api", "ok" if health.get("ok") else "not ok"],
        ["mqtt connected", stats["connected"]],
        ["engine ticks", stats["engine_ticks"]],
        ["engine last error", stats["engine_last_error"]],
        ["broker reloads", stats.get("broker_reloads", "-")],
        ["broker reload error", stats.get("broker_reload_error")],
    ]
    for table in ("received", "malformed", "events"):
        rows += [[f"{table} {k}", v] for k, v in sorted(stats[table].items())]
    _table("server status", ["what", "value"], rows)


# --- models -----------------------------------------------------------------------------------------


@models_app.command("list")
def models_list() -> None:
    """List models and their versions."""
    models = call("GET", "/api/models")
    _table(
        "models",
        ["id", "name", "versions", "description"],
        [[m["id"], m["name"], ", ".join(m["versions"]), m["description"]] for m in models],
    )


@models_app.command("create")
def models_create(name: str, description: str = typer.Option("", help="free text")) -> None:
    """Create a model (its name goes into every manifest)."""
    m = call("POST", "/api/models", json={"name": name, "description": description})
    console.print(f"created model {m['name']} (id {m['id']})")


@models_app.command("upload")
def models_upload(
    name: str = typer.Argument(..., help="model name (created first with `models create`)"),
    tflite: Path = typer.Argument(..., help="the int8 .tflite to package"),
    version: str = typer.Option(..., help="semantic version x.y.z"),
    hardware_class: int = typer.Option(..., help="hardware class id the package is for"),
    min_runtime: str = typer.Option("0.1.0", help="lowest runtime version that may install it"),
    security_counter: int | None = typer.Option(
        None, help="anti-rollback floor (default: the model's latest)"
    ),
    notes: str = typer.Option(""),
) -> None:
    """Upload a .tflite; the server builds and signs the package with its key."""
    params: dict[str, Any] = {
        "version": version,
        "hardware_class": hardware_class,
        "min_runtime_version": min_runtime,
        "notes": notes,
    }
    if security_counter is not None:
        params["security_counter"] = security_counter
    mv = call(
        "POST",
        f"/api/models/{_model_id(name)}/versions",
        params=params,
        content=_read(tflite),
        headers={"Content-Type": "application/octet-stream"},
    )
    _print_packages(f"{mv['model_name']} {mv['version']} (version id {mv['id']})", mv["packages"])


@models_app.command("versions")
def models_versions(name: str) -> None:
    """Versions of a model with their packages."""
    rows = []
    for v in call("GET", f"/api/models/{_model_id(name)}/versions"):
        for p in v["packages"] or [{}]:
            rows.append(
                [
                    v["id"],
                    v["version"],
                    p.get("hardware_class"),
                    p.get("id"),
                    p.get("size"),
                    p.get("sequence"),
                    p.get("signed_by"),
                ]
            )
    _table(
        f"versions of {name}",
        ["version id", "version", "hw class", "package", "bytes", "sequence", "signed by"],
        rows,
    )


def _print_packages(title: str, packages: list[dict[str, Any]]) -> None:
    _table(
        title,
        ["package", "model", "version", "hw class", "bytes", "sequence", "key id", "signed by"],
        [
            [
                p["id"],
                p["model_name"],
                p["version"],
                p["hardware_class"],
                p["size"],
                p["sequence"],
                p["key_id"],
                p["signed_by"],
            ]
            for p in packages
        ],
    )


# --- packages ---------------------------------------------------------------------------------------


@packages_app.command("list")
def packages_list(version_id: int | None = typer.Option(None, help="only this model version")) -> None:
    """List packages."""
    params = {"model_version_id": version_id} if version_id is not None else {}
    _print_packages("packages", call("GET", "/api/packages", params=params))


@packages_app.command("upload")
def packages_upload(path: Path, notes: str = typer.Option("")) -> None:
    """Upload a package signed offline; the server verifies it against its trust store."""
    p = call(
        "POST",
        "/api/packages",
        params={"notes": notes},
        content=_read(path),
        headers={"Content-Type": "application/octet-stream"},
    )
    _print_packages("uploaded", [p])


@packages_app.command("download")
def packages_download(package_id: str, out: Path = typer.Option(..., help="file to write")) -> None:
    """Download a package file."""
    data = call("GET", f"/api/packages/{package_id}/download")
    try:
        out.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    console.print(f"wrote {len(data)} bytes to {out}")


# --- devices ----------------------------------------------------------------------------------------


def _device_rows(devices: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            d["id"],
            d["hardware_class"],
            d["group"],
            ",".join(d["tags"]),
            "yes" if d["online"] else "no",
            (d["active_model_sha256"] or "")[:12],
            _ts(d["last_seen"]),
        ]
        for d in devices
    ]


DEVICE_COLUMNS = ["id", "hw class", "group", "tags", "online", "active model", "last seen"]


@devices_app.command("list")
def devices_list(
    group: str | None = None,
    tag: str | None = None,
    hardware_class: int | None = None,
    online: bool | None = typer.Option(None, "--online/--offline", help="only online / offline devices"),
) -> None:
    """List devices, optionally filtered."""
    params = {
        k: v
        for k, v in {"group": group, "tag": tag, "hardware_class": hardware_class, "online": online}.items()
        if v is not None
    }
    _table("devices", DEVICE_COLUMNS, _device_rows(call("GET", "/api/devices", params=params)))


@devices_app.command("provision")
def devices_provision(
    hardware_class: int = typer.Option(..., help="hardware class id"),
    device_id: str | None = typer.Option(None, "--id", help="chosen id (default: generated)"),
    name: str = typer.Option(""),
    group: str | None = None,
    tag: list[str] = typer.Option([], help="repeat for several tags"),
    as_json: bool = typer.Option(False, "--json", help="print the whole answer (credentials) as JSON"),
) -> None:
    """Register a device; prints its MQTT credentials (the password is shown only once)."""
    body: dict[str, Any] = {"hardware_class": hardware_class, "name": name, "tags": tag}
    if device_id:
        body["id"] = device_id
    if group:
        body["group"] = group
    out = call("POST", "/api/devices", json=body)
    if as_json:
        console.print_json(json.dumps(out))
        return
    m = out["mqtt"]
    _table(
        "provisioned",
        ["field", "value"],
        [
            ["device id", out["device"]["id"]],
            ["mqtt username", m["username"]],
            ["mqtt password", m["password"]],
            ["broker", f"{m['host']}:{m['port']}" + (" (TLS)" if m["tls"] else "")],
            ["chunk size", out["chunk_size"]],
            *[[f"trusted key {k['key_id']}", k["public_key"]] for k in out["trust_store"]],
        ],
    )


@devices_app.command("show")
def devices_show(device_id: str) -> None:
    """A device, its reported and desired state, and its rollout actions."""
    d = call("GET", f"/api/devices/{device_id}")
    _table(f"device {device_id}", DEVICE_COLUMNS, _device_rows([d]))
    if d["reported"]:
        console.print_json(json.dumps({"reported": d["reported"], "desired": d["desired"]}))
    actions = call("GET", f"/api/devices/{device_id}/actions")
    _print_actions(f"actions of {device_id}", actions)


@devices_app.command("update")
def devices_update(
    device_id: str,
    name: str | None = None,
    group: str | None = None,
    clear_group: bool = typer.Option(False, "--clear-group"),
    tag: list[str] | None = typer.Option(None, help="replaces the tags; repeat for several"),
) -> None:
    """Change a device's name, group or tags."""
    body: dict[str, Any] = {"clear_group": clear_group}
    if name is not None:
        body["name"] = name
    if group is not None:
        body["group"] = group
    if tag:
        body["tags"] = tag
    _table("device", DEVICE_COLUMNS, _device_rows([call("PATCH", f"/api/devices/{device_id}", json=body)]))


@devices_app.command("delete")
def devices_delete(device_id: str) -> None:
    """Delete a device that never took part in a rollout."""
    call("DELETE", f"/api/devices/{device_id}")
    console.print(f"deleted {device_id}")


@devices_app.command("credentials")
def devices_credentials(device_id: str) -> None:
    """Issue a new MQTT password (the old one stops working once the broker reloads)."""
    out = call("POST", f"/api/devices/{device_id}/credentials")
    console.print(f"{out['mqtt']['username']} {out['mqtt']['password']}")


# --- rollouts ---------------------------------------------------------------------------------------


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


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def _transfer(t: dict[str, Any]) -> str:
    """Bytes sent against the raw packages' total, e.g. '41.0 KiB of 1.2 MiB raw'."""
    if not t.get("raw_bytes"):
        return ""
    return f"{_kb(t['bytes_sent'])} of {_kb(t['raw_bytes'])} raw"


def _payload(a: dict[str, Any]) -> str:
    enc = a.get("payload_encoding")
    if enc is None:
        return ""
    name = {0: "raw", 1: "compressed", 2: "delta"}.get(enc, str(enc))
    return f"{name} (after {a['fallback_reason'].split(' ')[0]})" if a.get("fallback_reason") else name


def _print_actions(title: str, actions: list[dict[str, Any]]) -> None:
    _table(
        title,
        ["device", "purpose", "op", "wave", "state", "payload", "sent", "error", "updated"],
        [
            [
                a["device_id"],
                a["purpose"],
                a["operation"],
                a["wave"] + 1,
                a["state"],
                _payload(a),
                _kb(a.get("bytes_sent", 0)) if a.get("sent_package_id") else "",
                f"{a['error_code']} {a['error']}".strip() if a["error_code"] or a["error"] else "",
                _ts(a["updated_at"]),
            ]
            for a in actions
        ],
    )


@rollouts_app.command("list")
def rollouts_list(state: str | None = None) -> None:
    """List rollouts, newest first."""
    params = {"state": state} if state else {}
    _rollout_table("rollouts", (call("GET", "/api/rollouts", params=params)))


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
    }
    if timeout is not None:
        body["action_timeout_seconds"] = timeout
    _rollout_table("rollout", ([call("POST", "/api/rollouts", json=body)]))


@rollouts_app.command("show")
def rollouts_show(rollout_id: int, actions: bool = typer.Option(True, "--actions/--no-actions")) -> None:
    """A rollout with per-device action states."""
    r = call("GET", f"/api/rollouts/{rollout_id}")
    _rollout_table(f"rollout {rollout_id}", ([r]))
    console.print(
        f"waves {r['wave_sizes']}  deploy {r['deploy']['by_state']}  rollback {r['rollback']['by_state']}"
    )
    if actions:
        _print_actions("device actions", call("GET", f"/api/rollouts/{rollout_id}/actions"))


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
    rollout_id: int, interval: float = typer.Option(1.0, min=0.1, help="seconds between polls")
) -> None:
    """Print a rollout's progress whenever it changes, until it stops moving (completed, paused, ...)."""
    last = ""
    while True:
        r = call("GET", f"/api/rollouts/{rollout_id}")
        line = _progress_line(r)
        if line != last:
            console.print(f"{time.strftime('%H:%M:%S')}  {line}", soft_wrap=True, highlight=False)
            last = line
        if r["state"] not in MOVING_STATES:
            return
        time.sleep(interval)


def _command(cmd: str) -> Callable[[int], None]:
    def run(rollout_id: int) -> None:
        _rollout_table("rollout", ([call("POST", f"/api/rollouts/{rollout_id}/{cmd}")]))

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


# --- telemetry --------------------------------------------------------------------------------------


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


@telemetry_app.command("list")
def telemetry_list(
    device: str | None = None,
    model: str | None = None,
    version: str | None = None,
    since: float | None = typer.Option(None, help=SINCE_HELP),
    until: float | None = typer.Option(None, help=UNTIL_HELP),
    limit: int = 50,
) -> None:
    """Latest telemetry reports."""
    params = _telemetry_params(device, model, version, since, until) | {"limit": limit}
    rows = call("GET", "/api/telemetry", params=params)
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
    device: str | None = None,
    model: str | None = None,
    version: str | None = None,
    since: float | None = typer.Option(None, help=SINCE_HELP),
    until: float | None = typer.Option(None, help=UNTIL_HELP),
) -> None:
    """Totals and means over a time window."""
    s = call("GET", "/api/telemetry/summary", params=_telemetry_params(device, model, version, since, until))
    _table("telemetry summary", ["what", "value"], [[k, _summary_value(k, v)] for k, v in s.items()])


def _summary_value(key: str, value: Any) -> Any:
    if key in ("since", "until"):
        return _ts(value)
    if isinstance(value, float):
        return f"{value:.0f}" if key.startswith("latency") else f"{value:.3f}"
    return value


def register(app: typer.Typer) -> None:
    """Mount the control-plane groups on the `tinyfleet` command."""
    try:  # `models compress` lives with the compression pipeline when it is installed
        from server.pipeline.cli import compress_command

        models_app.command("compress")(compress_command)
    except ImportError:
        pass
    app.add_typer(server_app, name="server")
    app.add_typer(models_app, name="models")
    app.add_typer(packages_app, name="packages")
    app.add_typer(devices_app, name="devices")
    app.add_typer(rollouts_app, name="rollouts")
    app.add_typer(telemetry_app, name="telemetry")
