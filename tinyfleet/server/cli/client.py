"""What every control-plane command shares: the HTTP client, one-line errors, tables and formats.

Commands reach a running server over HTTP (TINYFLEET_API_URL, TINYFLEET_API_TOKEN); any API error is
printed as one line with the server's message, exit code 1.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console, ConsoleDimensions
from rich.table import Table

PIPE_WIDTH = 10_000  # columns when stdout is not a terminal: nothing a script reads gets cut or wrapped


class _Console(Console):
    """A console that is full width when it does not write to a terminal: rich would otherwise cut a
    piped table at 80 columns (or at $COLUMNS, read once when the console was made)."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size


console = _Console()
err = Console(stderr=True, soft_wrap=True)  # an error stays one line, whatever the width

JSON_HELP = "print the API's JSON instead of a table (stable field names, for scripts)"


def json_option() -> Any:
    """The `--json` flag every list/show/create command takes."""
    return typer.Option(False, "--json", help=JSON_HELP)


def print_json(value: Any) -> None:
    """The API's JSON on stdout, as is: indented, never wrapped, never coloured."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


DEFAULT_URL = "http://127.0.0.1:8000"


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(1)


def _client() -> httpx.Client:
    from tinyfleet.server.config import DEFAULT_API_TOKEN

    url = os.environ.get("TINYFLEET_API_URL", DEFAULT_URL).rstrip("/")
    token = os.environ.get("TINYFLEET_API_TOKEN", DEFAULT_API_TOKEN)
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def call(method: str, path: str, *, accept: tuple[int, ...] = (), **kwargs: Any) -> Any:
    """One API call; errors become one line (server message, or why the server is unreachable).
    Statuses in `accept` are answers, not errors (e.g. 503 from /readyz)."""
    with _client() as client:
        try:
            resp = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the server at {client.base_url}: {exc} (set TINYFLEET_API_URL)")
    if resp.status_code >= 400 and resp.status_code not in accept:
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


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


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
