"""`tinyfleet server run|migrate|status`: run the control plane, migrate its database, ask its health."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

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

    from tinyfleet.server.app import create_app
    from tinyfleet.server.config import ConfigError, settings_from_env

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

    from tinyfleet.server.config import ConfigError
    from tinyfleet.server.devbroker import BrokerError, DevBroker
    from tinyfleet.server.services.credentials import hash_password, write_password_file

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
            DevBroker(host, port or None, password_file=password_file, admin_users=[user])
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
