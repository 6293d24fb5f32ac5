"""Control-plane commands: `tinyfleet server|models|packages|devices|rollouts|telemetry ...`.

One module per command group; `client` holds what they share. Everything but `server run` / `server
migrate` talks to a running server over HTTP (TINYFLEET_API_URL, TINYFLEET_API_TOKEN). Any API error is
printed as one line with the server's message; exit code 1.
"""

from __future__ import annotations

import typer

from tinyfleet.server.cli import client
from tinyfleet.server.cli.alerts import alerts_app
from tinyfleet.server.cli.certs import cert_app, fleet_ca_app
from tinyfleet.server.cli.client import _print_actions, call, console, err, fail
from tinyfleet.server.cli.devices import devices_app
from tinyfleet.server.cli.models import models_app
from tinyfleet.server.cli.packages import packages_app
from tinyfleet.server.cli.rollouts import _rollout_rows, _rollout_table, rollouts_app
from tinyfleet.server.cli.server_cmd import _managed_broker, server_app
from tinyfleet.server.cli.telemetry import telemetry_app
from tinyfleet.server.cli.users import audit_app, tokens_app, users_app

__all__ = [
    "_managed_broker",
    "_print_actions",
    "_rollout_rows",
    "_rollout_table",
    "call",
    "client",
    "console",
    "err",
    "fail",
    "register",
]


def register(app: typer.Typer) -> None:
    """Mount the control-plane groups on the `tinyfleet` command."""
    try:  # `models compress` lives with the compression pipeline when it is installed
        from tinyfleet.ml.cli import compress_command

        models_app.command("compress")(compress_command)
    except ImportError:
        pass
    app.add_typer(server_app, name="server")
    app.add_typer(models_app, name="models")
    app.add_typer(packages_app, name="packages")
    app.add_typer(devices_app, name="devices")
    devices_app.add_typer(cert_app, name="cert")
    app.add_typer(fleet_ca_app, name="fleet-ca")
    app.add_typer(rollouts_app, name="rollouts")
    app.add_typer(telemetry_app, name="telemetry")
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
    app.add_typer(audit_app, name="audit")
