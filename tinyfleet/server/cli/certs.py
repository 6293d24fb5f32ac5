"""Certificate identity (TINYFLEET_DEVICE_AUTH=cert) on the command line.

`tinyfleet devices cert rotate|revoke ID` and `tinyfleet fleet-ca show` talk to a running server;
`tinyfleet fleet-ca issue-broker|issue-gateway` work on the CA directory itself (TINYFLEET_CA_DIR,
TINYFLEET_CA_PASSPHRASE), for a broker and gateway of your own (docs/DEPLOY.md). `server run --broker`
in cert mode starts its Mosquitto through `managed_tls_broker` below.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tinyfleet.server.cli.client import _table, call, console, fail, json_option, print_json

if TYPE_CHECKING:
    from contextlib import ExitStack

    from tinyfleet.server.config import Settings
    from tinyfleet.server.services.fleet_ca import FleetCA

cert_app = typer.Typer(help="Device certificates (TINYFLEET_DEVICE_AUTH=cert).", no_args_is_help=True)
fleet_ca_app = typer.Typer(help="The fleet CA that signs device, broker and gateway certificates.")


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def write_device_files(
    directory: Path, device_id: str, cert_pem: str, key_pem: str | None, ca_pem: str
) -> None:
    """DIR/ID.pem, DIR/ID.key (mode 0600; only when the server made the key) and DIR/ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{device_id}.pem").write_text(cert_pem, encoding="ascii")
    if key_pem is not None:
        _write_secret(directory / f"{device_id}.key", key_pem)
    (directory / "ca.pem").write_text(ca_pem, encoding="ascii")


def write_bulk_files(directory: Path, answer: dict[str, Any]) -> None:
    """Every device's certificate and key of a cert-mode bulk answer, and the CA, into directory."""
    for d in answer["devices"]:
        write_device_files(
            directory, d["id"], d["certificate_pem"], d.get("private_key_pem"), answer["ca_pem"]
        )


def _read_csr(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}")


@cert_app.command("rotate")
def cert_rotate(
    device_id: str = typer.Argument(..., help="the device"),
    csr: Path | None = typer.Option(None, help="a PEM CSR from the device (CN = its id): no key is made"),
    out: Path = typer.Option(Path("."), help="directory for ID.pem, ID.key (0600) and ca.pem"),
    as_json: bool = json_option(),
) -> None:
    """Issue the device a new certificate; its older ones are revoked (the broker refuses them)."""
    body = {"csr": _read_csr(csr)} if csr is not None else {}
    doc = call("POST", f"/api/devices/{device_id}/certificate", json=body)["certificate"]
    write_device_files(out, device_id, doc["certificate_pem"], doc["private_key_pem"], doc["ca_pem"])
    if as_json:
        print_json({k: v for k, v in doc.items() if k != "private_key_pem"})
        return
    key = f", key {out / (device_id + '.key')}" if doc["private_key_pem"] else ""
    console.print(f"new certificate {doc['serial']} for {device_id}: {out / (device_id + '.pem')}{key}")


@cert_app.command("revoke")
def cert_revoke(
    device_id: str = typer.Argument(..., help="the device"), as_json: bool = json_option()
) -> None:
    """Revoke every certificate of the device: refused at its next connection, its messages ignored now."""
    doc = call("POST", f"/api/devices/{device_id}/certificate/revoke")
    if as_json:
        print_json(doc)
        return
    _table(f"revoked ({device_id})", ["serial"], [[s] for s in doc["revoked_serials"]])


@fleet_ca_app.command("show")
def fleet_ca_show() -> None:
    """Print the fleet CA certificate (PEM) of the running server."""
    pem = call("GET", "/api/fleet-ca.pem")
    typer.echo(pem.decode() if isinstance(pem, bytes) else str(pem), nl=False)


def _local_ca() -> FleetCA:
    from tinyfleet.server.config import ConfigError, settings_from_env
    from tinyfleet.server.services.fleet_ca import FleetCA, FleetCAError

    try:
        settings = settings_from_env()
        return FleetCA.open(settings.fleet_ca_dir, settings.ca_passphrase, production=settings.production)
    except (ConfigError, FleetCAError) as exc:
        fail(str(exc))


@fleet_ca_app.command("issue-broker")
def fleet_ca_issue_broker(
    out: Path = typer.Option(..., help="directory for broker.pem and broker.key (0600)"),
    name: list[str] = typer.Option([], help="host name or IP devices connect to (repeat)"),
) -> None:
    """A server certificate for your Mosquitto (localhost, 127.0.0.1 and each --name)."""
    from tinyfleet.server.services.fleet_ca import write_pair

    ca = _local_ca()
    cert, key = write_pair(out, "broker", ca.issue_broker(name))
    console.print(f"certfile {cert}\nkeyfile {key}\ncafile {ca.cert_path}\ncrlfile {ca.crl_path}")


@fleet_ca_app.command("issue-gateway")
def fleet_ca_issue_gateway(
    out: Path = typer.Option(..., help="directory for gateway.pem and gateway.key (0600)"),
    user: str = typer.Option("tinyfleet-server", help="the gateway's service user (the ACL's)"),
) -> None:
    """The gateway's client certificate (CN = its service user): TINYFLEET_MQTT_CERT_FILE / _KEY_FILE."""
    from tinyfleet.server.services.fleet_ca import write_pair
    from tinyfleet.server.services.ids import check_service_username

    try:
        check_service_username(user)
    except ValueError as exc:
        fail(str(exc))
    ca = _local_ca()
    cert, key = write_pair(out, "gateway", ca.issue_service(user))
    console.print(f"TINYFLEET_MQTT_CERT_FILE={cert}\nTINYFLEET_MQTT_KEY_FILE={key}")
    console.print(f"TINYFLEET_MQTT_CA_FILE={ca.cert_path}")


def managed_tls_broker(stack: ExitStack, settings: Settings, host: str, port: int) -> Settings:
    """`server run --broker` in cert mode: a Mosquitto with a TLS listener trusting the fleet CA (and its
    CRL), a broker certificate and a gateway certificate issued at each start; devices are never added
    to it. The pid file lets the server reload it after a revocation (it re-reads the CRL on SIGHUP)."""
    from tinyfleet.server.broker_acl import DEPLOY_SERVICE_USER
    from tinyfleet.server.cli.server_cmd import BROKER_STATE, _read_state, _stop_leftover
    from tinyfleet.server.config import ConfigError
    from tinyfleet.server.devbroker import BrokerError, BrokerTls, DevBroker
    from tinyfleet.server.services.fleet_ca import FleetCA, FleetCAError, write_pair

    if settings.mqtt_url:
        raise ConfigError("give --broker or TINYFLEET_MQTT_URL, not both")
    try:
        ca = FleetCA.open(settings.fleet_ca_dir, settings.ca_passphrase, production=settings.production)
    except FleetCAError as exc:
        raise ConfigError(str(exc)) from None
    data_dir = settings.data_dir
    workdir = data_dir / "broker"
    state_file, pid_file = data_dir / BROKER_STATE, data_dir / "mosquitto.pid"
    previous = _read_state(state_file)
    _stop_leftover(previous, workdir / "mosquitto.conf")
    if not port and previous and previous.get("host") == host:
        port = int(previous.get("port") or 0)
    tls_dir = data_dir / "broker-tls"
    server_cert, server_key = write_pair(tls_dir, "server", ca.issue_broker(settings.broker_cert_names))
    user = DEPLOY_SERVICE_USER
    gw_cert, gw_key = write_pair(tls_dir, "gateway", ca.issue_service(user))
    broker = DevBroker(
        host,
        port or None,
        admin_users=[user],
        workdir=workdir,
        die_with_parent=True,
        tls=BrokerTls(ca.cert_path, server_cert, server_key, ca.crl_path),
    )
    try:
        running = stack.enter_context(broker)
    except BrokerError as exc:
        raise ConfigError(str(exc)) from None
    state = {
        "pid": running.pid,
        "host": running.host,
        "port": running.port,
        "config": str(workdir / "mosquitto.conf"),
    }
    state_file.write_text(json.dumps(state) + "\n", encoding="utf-8")
    pid_file.write_text(f"{running.pid}\n", encoding="ascii")
    stack.callback(pid_file.unlink, missing_ok=True)
    console.print(f"mosquitto on {running.url} (pid {running.pid}, client certificates from {ca.cert_path})")
    return settings.with_overrides(
        mqtt_url=running.url,
        mqtt_client_id=user,
        mqtt_ca_file=ca.cert_path,
        mqtt_cert_file=gw_cert,
        mqtt_key_file=gw_key,
        mqtt_broker_pid_file=pid_file,
    )
