"""`tinyfleet server run|migrate|status`: run the control plane, migrate its database, ask its health."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tinyfleet.server.cli.client import _table, call, console, fail, json_option, print_json

if TYPE_CHECKING:
    from contextlib import ExitStack

    from tinyfleet.server.config import Settings

server_app = typer.Typer(
    help="Run the control plane (API, MQTT gateway, rollout driver).", no_args_is_help=True
)


@server_app.command("run")
def server_run(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, min=1, max=65535, help="port to listen on"),
    broker: bool = typer.Option(
        False, "--broker", help="also start and manage a Mosquitto (device passwords, ACL, reloads)"
    ),
    broker_host: str = typer.Option("127.0.0.1", help="with --broker: address the broker listens on"),
    broker_port: int = typer.Option(0, min=0, max=65535, help="with --broker: its port (0: a free one)"),
) -> None:
    """Run API + MQTT gateway + rollout driver with settings from TINYFLEET_* variables."""
    import logging
    from contextlib import ExitStack

    import uvicorn

    from tinyfleet.server import logs
    from tinyfleet.server.app import create_app
    from tinyfleet.server.config import ConfigError, settings_from_env

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter on every start
    with ExitStack() as stack:
        try:
            settings = settings_from_env()
            logs.apply_format(settings.log_format)  # before the first line (the signing-key notice)
            if broker and settings.device_auth == "cert":
                from tinyfleet.server.cli.certs import managed_tls_broker

                settings = managed_tls_broker(stack, settings, broker_host, broker_port)
            elif broker:
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
            log_config = logs.uvicorn_log_config(settings.log_format)
            if log_config is None:
                uvicorn.run(app, host=host, port=port, log_level="info")
            else:
                uvicorn.run(app, host=host, port=port, log_level="info", log_config=log_config)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
        finally:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _managed_broker(stack: ExitStack, settings: Settings, host: str, port: int) -> Settings:
    """Start a Mosquitto that lives as long as the server, authenticating devices with the password file
    the server writes; its pid file lets the server reload it after every new credential.

    Crash safety (docs/DEPLOY.md): on Linux the broker dies with the server even on SIGKILL; elsewhere a
    broker a killed server left behind is found through the state file and stopped. Either way the new
    broker listens on the port recorded there, the address devices were provisioned with."""
    import secrets

    from tinyfleet.server.config import ConfigError
    from tinyfleet.server.devbroker import BrokerError, DevBroker
    from tinyfleet.server.services.credentials import hash_password, write_password_file

    if settings.mqtt_url:
        raise ConfigError("give --broker or TINYFLEET_MQTT_URL, not both")
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    password_file = settings.mqtt_password_file or data_dir / "mosquitto.passwd"
    pid_file = data_dir / "mosquitto.pid"
    state_file = data_dir / BROKER_STATE
    workdir = data_dir / "broker"
    previous = _read_state(state_file)
    _stop_leftover(previous, workdir / "mosquitto.conf")
    recorded = bool(not port and previous and previous.get("host") == host)
    if recorded and previous is not None:
        port = int(previous.get("port") or 0)
    user = settings.mqtt_client_id
    password = secrets.token_urlsafe(18)
    # The gateway's account must be in the file before the broker starts; the server rewrites the file
    # (devices + this account) at start.
    write_password_file(password_file, [(user, hash_password(password))])
    broker = DevBroker(
        host,
        port or None,
        password_file=password_file,
        admin_users=[user],
        workdir=workdir,
        die_with_parent=True,
    )
    try:
        running = stack.enter_context(broker)
    except BrokerError as exc:
        hint = f" (recorded in {state_file}; free it or give --broker-port)" if recorded else ""
        raise ConfigError(f"{exc}{hint}") from None
    conf = workdir / "mosquitto.conf"
    state = {"pid": running.pid, "host": running.host, "port": running.port, "config": str(conf)}
    state_file.write_text(json.dumps(state) + "\n", encoding="utf-8")
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


# Kept after a clean stop too: the port in it is the address devices were provisioned with.
BROKER_STATE = "broker.json"


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _command_line(pid: int) -> str:
    """The command line of a live process, "" when there is none (zombies included)."""
    if Path("/proc/self").exists():
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return ""
    with contextlib.suppress(OSError):  # no /proc (macOS, BSD): ask ps
        cmd = ["ps", "-o", "command=", "-p", str(pid)]
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    return ""


def _stop_leftover(state: dict[str, Any] | None, conf: Path) -> None:
    """Stop the broker of a previous run if it is still alive: our mosquitto with our config. A pid
    reused by another program fails that test and is left alone."""
    pid = state.get("pid") if state else None
    if not isinstance(pid, int) or pid <= 0:
        return
    line = _command_line(pid)
    if "mosquitto" not in line or str(conf) not in line:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _command_line(pid):
            time.sleep(0.05)
        if _command_line(pid):
            os.kill(pid, signal.SIGKILL)
    console.print(f"stopped mosquitto pid {pid} left by a previous run", soft_wrap=True)


@server_app.command("migrate")
def server_migrate() -> None:
    """Bring the database (TINYFLEET_DATABASE_URL) to the latest schema."""
    from tinyfleet.server.config import ConfigError, settings_from_env
    from tinyfleet.server.db import make_engine, upgrade_to_head

    try:
        settings = settings_from_env()
    except ConfigError as exc:
        fail(str(exc))
    engine = make_engine(settings.database_url)
    upgrade_to_head(engine)
    engine.dispose()
    console.print("database schema is at head")


@server_app.command("status")
def server_status(as_json: bool = json_option()) -> None:
    """Readiness (database, migrations, MQTT gateway) and gateway counters of a running server. Exit code
    1, with the reason on one line, when the server is not ready."""
    ready = call("GET", "/readyz", accept=(503,))
    if not isinstance(ready, dict) or "ready" not in ready:
        fail(f"unexpected answer from /readyz: {ready!r}"[:200])
    if not ready["ready"]:
        if as_json:
            print_json({"readyz": ready, "gateway": None})
        fail(f"server not ready: {ready['detail'].removeprefix('not ready: ')}")
    stats = call("GET", "/api/gateway/stats")
    if as_json:
        print_json({"readyz": ready, "gateway": stats})
        return
    rows = [
        *[[name, f"ok ({check['detail']})"] for name, check in ready["checks"].items()],
        ["mqtt connected", stats["connected"]],
        ["rollout ticks", stats["rollout_ticks"]],
        ["rollout last error", stats["rollout_last_error"]],
        ["broker reloads", stats.get("broker_reloads", "-")],
        ["broker reload error", stats.get("broker_reload_error")],
    ]
    for table in ("received", "malformed", "events"):
        rows += [[f"{table} {k}", v] for k, v in sorted(stats[table].items())]
    _table("server status", ["what", "value"], rows)
