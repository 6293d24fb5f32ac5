"""`tinyfleet devices ...`: provision, label, inspect and delete devices."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer

from tinyfleet.server.cli import bulk_devices as bulk
from tinyfleet.server.cli import certs
from tinyfleet.server.cli.client import (
    _print_actions,
    _table,
    _ts,
    call,
    console,
    fail,
    json_option,
    print_json,
)

devices_app = typer.Typer(help="Devices: provision, label, inspect.", no_args_is_help=True)


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


DEVICE_ID_HELP = "device id"


@devices_app.command("list")
def devices_list(
    group: str | None = typer.Option(None, help="only devices of this group"),
    tag: str | None = typer.Option(None, help="only devices carrying this tag"),
    hardware_class: int | None = typer.Option(None, help="only devices of this hardware class"),
    online: bool | None = typer.Option(None, "--online/--offline", help="only online / offline devices"),
    as_json: bool = json_option(),
) -> None:
    """List devices, optionally filtered."""
    params = {
        k: v
        for k, v in {"group": group, "tag": tag, "hardware_class": hardware_class, "online": online}.items()
        if v is not None
    }
    devices = call("GET", "/api/devices", params=params)
    if as_json:
        print_json(devices)
        return
    _table("devices", DEVICE_COLUMNS, _device_rows(devices))


@devices_app.command("provision")
def devices_provision(
    hardware_class: int | None = typer.Option(None, help="hardware class id (needed unless --from)"),
    device_id: str | None = typer.Option(None, "--id", help="chosen id (default: generated)"),
    name: str = typer.Option("", help="display name"),
    group: str | None = typer.Option(None, help="group the device belongs to"),
    tag: list[str] = typer.Option([], help="repeat for several tags"),
    count: int | None = typer.Option(None, "--count", help="provision this many devices in one call"),
    prefix: str | None = typer.Option(None, help="with --count: ids PREFIX-00000.. (default: random)"),
    start: int = typer.Option(0, help="with --count and --prefix: the first index"),
    from_csv: Path | None = typer.Option(
        None, "--from", help="provision the devices of a CSV (id, hardware_class, group, tags)"
    ),
    out_file: Path | None = typer.Option(
        None, "--out", help="bulk: new file (mode 0600) for the credentials CSV (default: timestamped)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the whole answer (credentials) as JSON"),
) -> None:
    """Register a device and print its MQTT credentials (the password is shown only once); with --count
    or --from, many devices in one transaction, their credentials written to a file."""
    if count is not None or from_csv is not None:
        _provision_bulk(hardware_class, group, tag, count, prefix, start, from_csv, out_file, as_json)
        return
    if hardware_class is None:
        fail("--hardware-class is needed (or --from devices.csv)")
    body: dict[str, Any] = {"hardware_class": hardware_class, "name": name, "tags": tag}
    if device_id:
        body["id"] = device_id
    if group:
        body["group"] = group
    out = call("POST", "/api/devices", json=body)
    if as_json:
        print_json(out)
        return
    m = out["mqtt"]
    cert = out.get("certificate")
    if cert is not None:  # cert mode: files instead of a password (the key is shown only once)
        pems = (cert["certificate_pem"], cert["private_key_pem"], cert["ca_pem"])
        certs.write_device_files(Path("."), out["device"]["id"], *pems)
    _table(
        "provisioned",
        ["field", "value"],
        [
            ["device id", out["device"]["id"]],
            ["mqtt username", m["username"]],
            ["mqtt password", m["password"]]
            if cert is None
            else ["certificate", f"{m['username']}.pem/.key, ca.pem (serial {cert['serial']})"],
            ["broker", f"{m['host']}:{m['port']}" + (" (TLS)" if m["tls"] else "")],
            ["chunk size", out["chunk_size"]],
            ["encryption key", out.get("encryption_key") or "-"],  # X25519 private key, shown once
            *[[f"trusted key {k['key_id']}", k["public_key"]] for k in out["trust_store"]],
        ],
    )


def _provision_bulk(
    hardware_class: int | None,
    group: str | None,
    tags: list[str],
    count: int | None,
    prefix: str | None,
    start: int,
    from_csv: Path | None,
    out_file: Path | None,
    as_json: bool,
) -> None:
    if (count is None) == (from_csv is None):
        fail("give either --count or --from, not both")
    if from_csv is not None:
        if hardware_class is not None or group or tags or prefix:
            fail("--from takes hardware class, group and tags from the CSV; drop those options")
        try:
            body: dict[str, Any] = {"devices": bulk.read_devices_csv(from_csv)}
        except bulk.CsvError as exc:
            fail(str(exc))
    else:
        if hardware_class is None:
            fail("--count needs --hardware-class")
        body = {"count": count, "start": start, "hardware_class": hardware_class, "tags": tags}
        body.update({k: v for k, v in {"prefix": prefix, "group": group}.items() if v})
    path = out_file or Path(time.strftime("tinyfleet-credentials-%Y%m%d-%H%M%S.csv"))
    try:  # before the call: credentials with nowhere to go would be lost (the server keeps only hashes)
        fd = bulk.create_credentials_file(path)
    except FileExistsError:
        fail(f"{path} exists already; the credentials go to a new file (--out)")
    except OSError as exc:
        fail(f"cannot create {path}: {exc.strerror}")
    try:
        answer = call("POST", "/api/devices/bulk", json=body)
    except BaseException:
        os.close(fd)
        path.unlink()
        raise
    bulk.write_credentials(fd, answer)
    if answer.get("ca_pem"):  # cert mode: each device's certificate and key beside the CSV
        certs.write_bulk_files(path.with_name(path.stem + "-certs"), answer)
    summary = {
        "count": answer["count"],
        "credentials_file": str(path),
        "mqtt": answer["mqtt"],
        "trust_store": answer["trust_store"],
    }
    if as_json:
        print_json(summary)
        return
    m = answer["mqtt"]
    broker = f"{m['host']}:{m['port']}" + (" (TLS)" if m["tls"] else "") if m["host"] else "-"
    ids = [d["id"] for d in answer["devices"]]
    console.print(f"provisioned {answer['count']} devices ({ids[0]} .. {ids[-1]}), broker {broker}")
    console.print(f"credentials (id, username, password, ...) written to {path} (mode 0600)")
    for k in answer["trust_store"]:
        console.print(f"trusted key {k['key_id']}: {k['public_key']}")


@devices_app.command("show")
def devices_show(
    device_id: str = typer.Argument(..., help=DEVICE_ID_HELP), as_json: bool = json_option()
) -> None:
    """A device, its reported and desired state, and its rollout actions."""
    d = call("GET", f"/api/devices/{device_id}")
    actions = call("GET", f"/api/devices/{device_id}/actions")
    if as_json:
        print_json({**d, "actions": actions})
        return
    _table(f"device {device_id}", DEVICE_COLUMNS, _device_rows([d]))
    if d["reported"]:
        console.print_json(data={"reported": d["reported"], "desired": d["desired"]})
    _print_actions(f"actions of {device_id}", actions)


@devices_app.command("update")
def devices_update(
    device_id: str = typer.Argument(..., help=DEVICE_ID_HELP),
    name: str | None = typer.Option(None, help="new display name"),
    group: str | None = typer.Option(None, help="new group"),
    clear_group: bool = typer.Option(False, "--clear-group", help="take the device out of its group"),
    tag: list[str] | None = typer.Option(None, help="replaces the tags; repeat for several"),
    as_json: bool = json_option(),
) -> None:
    """Change a device's name, group or tags."""
    body: dict[str, Any] = {"clear_group": clear_group}
    if name is not None:
        body["name"] = name
    if group is not None:
        body["group"] = group
    if tag:
        body["tags"] = tag
    device = call("PATCH", f"/api/devices/{device_id}", json=body)
    if as_json:
        print_json(device)
        return
    _table("device", DEVICE_COLUMNS, _device_rows([device]))


@devices_app.command("delete")
def devices_delete(device_id: str = typer.Argument(..., help=DEVICE_ID_HELP)) -> None:
    """Delete a device that never took part in a rollout."""
    call("DELETE", f"/api/devices/{device_id}")
    console.print(f"deleted {device_id}")


@devices_app.command("credentials")
def devices_credentials(
    device_id: str = typer.Argument(..., help=DEVICE_ID_HELP), as_json: bool = json_option()
) -> None:
    """Issue a new MQTT password (the old one stops working once the broker reloads)."""
    out = call("POST", f"/api/devices/{device_id}/credentials")
    if as_json:
        print_json(out)
        return
    console.print(f"{out['mqtt']['username']} {out['mqtt']['password']}")
