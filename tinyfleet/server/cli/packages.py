"""`tinyfleet packages ...`: signed packages on the server (list, upload signed offline, download)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tinyfleet.server.cli.client import _print_packages, _read, call, console, fail, json_option, print_json

packages_app = typer.Typer(help="Signed packages on the server.", no_args_is_help=True)


@packages_app.command("list")
def packages_list(
    version_id: int | None = typer.Option(None, help="only this model version"),
    as_json: bool = json_option(),
) -> None:
    """List packages."""
    params = {"model_version_id": version_id} if version_id is not None else {}
    packages = call("GET", "/api/packages", params=params)
    if as_json:
        print_json(packages)
        return
    _print_packages("packages", packages)


@packages_app.command("upload")
def packages_upload(
    path: Path = typer.Argument(..., help="a package signed offline (`tinyfleet sign build`)"),
    notes: str = typer.Option("", help="notes kept with the package"),
    allow_selftest_mismatch: bool = typer.Option(
        False,
        "--allow-selftest-mismatch",
        help="store it even though its self-test will fail on every device (to test that path)",
    ),
    as_json: bool = json_option(),
) -> None:
    """Upload a package signed offline; the server verifies it against its trust store."""
    params: dict[str, Any] = {"notes": notes}
    if allow_selftest_mismatch:
        params["allow_selftest_mismatch"] = "true"
    p = call(
        "POST",
        "/api/packages",
        params=params,
        content=_read(path),
        headers={"Content-Type": "application/octet-stream"},
    )
    if as_json:
        print_json(p)
        return
    _print_packages("uploaded", [p])


@packages_app.command("download")
def packages_download(
    package_id: str = typer.Argument(..., help="package id (pkg-...)"),
    out: Path = typer.Option(..., help="file to write"),
) -> None:
    """Download a package file."""
    data = call("GET", f"/api/packages/{package_id}/download")
    try:
        out.write_bytes(data)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}")
    console.print(f"wrote {len(data)} bytes to {out}")
