"""`tinyfleet models ...`: the model registry (models, versions built from an uploaded .tflite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tinyfleet.server.cli.client import (
    _model_id,
    _print_packages,
    _read,
    _table,
    call,
    console,
    err,
    json_option,
    print_json,
)

models_app = typer.Typer(help="Model registry: models, versions (upload a .tflite).", no_args_is_help=True)


@models_app.command("list")
def models_list(as_json: bool = json_option()) -> None:
    """List models and their versions."""
    models = call("GET", "/api/models")
    if as_json:
        print_json(models)
        return
    _table(
        "models",
        ["id", "name", "versions", "description"],
        [[m["id"], m["name"], ", ".join(m["versions"]), m["description"]] for m in models],
    )


@models_app.command("create")
def models_create(
    name: str = typer.Argument(..., help="model name (goes into every manifest)"),
    description: str = typer.Option("", help="free text"),
    as_json: bool = json_option(),
) -> None:
    """Create a model (its name goes into every manifest)."""
    m = call("POST", "/api/models", json={"name": name, "description": description})
    if as_json:
        print_json(m)
        return
    console.print(f"created model {m['name']} (id {m['id']})")


@models_app.command("upload")
def models_upload(
    name: str = typer.Argument(..., help="model name (created first with `models create`)"),
    tflite: Path | None = typer.Argument(None, help="the int8 .tflite to package (or give --onnx)"),
    version: str = typer.Option(..., help="semantic version x.y.z"),
    hardware_class: int = typer.Option(..., help="hardware class id the package is for"),
    min_runtime: str = typer.Option("0.1.0", help="lowest runtime version that may install it"),
    security_counter: int | None = typer.Option(
        None, help="anti-rollback floor (default: the model's latest)"
    ),
    notes: str = typer.Option("", help="release notes kept with the version"),
    onnx: Path | None = typer.Option(
        None, "--onnx", help="convert this ONNX model to int8 here first (needs --data; the ml extra)"
    ),
    data: Path | None = typer.Option(
        None, help="with --onnx: calibration .npz (x in ONNX layout, y optional)"
    ),
    as_json: bool = json_option(),
) -> None:
    """Upload a .tflite (or an ONNX model converted here); the server builds and signs the package."""
    if (tflite is None) == (onnx is None):
        raise typer.BadParameter("give either a .tflite or --onnx with --data")
    if onnx is not None and (data is None or not data.is_file() or not onnx.is_file()):
        raise typer.BadParameter("--onnx needs an existing .onnx file and --data pointing to an .npz")
    model_id = _model_id(name)  # before a conversion of seconds: the model must exist
    if onnx is not None:
        # Converted on the client: the server stays free of TensorFlow and checks the result like any upload.
        try:
            from tinyfleet.ml.cli import onnx_to_tflite
        except ImportError:
            raise typer.BadParameter("--onnx needs the ml extra: pip install 'tinyfleet[ml]'") from None
        payload = onnx_to_tflite(onnx, data, False, err)[0].tflite  # progress on stderr: --json stays clean
    else:
        assert tflite is not None
        payload = _read(tflite)
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
        f"/api/models/{model_id}/versions",
        params=params,
        content=payload,
        headers={"Content-Type": "application/octet-stream"},
    )
    if as_json:
        print_json(mv)
        return
    _print_packages(f"{mv['model_name']} {mv['version']} (version id {mv['id']})", mv["packages"])


@models_app.command("versions")
def models_versions(
    name: str = typer.Argument(..., help="model name"), as_json: bool = json_option()
) -> None:
    """Versions of a model with their packages."""
    versions = call("GET", f"/api/models/{_model_id(name)}/versions")
    if as_json:
        print_json(versions)
        return
    rows = []
    for v in versions:
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
