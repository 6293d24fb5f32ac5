"""`tinyfleet packages ...`: signed packages on the server (list, upload signed offline, download)."""

from __future__ import annotations

from pathlib import Path

import typer

from tinyfleet.server.cli.client import _print_packages, _read, call, console, fail

packages_app = typer.Typer(help="Signed packages on the server.", no_args_is_help=True)


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
