"""`tinyfleet alerts ...`: drift alarms about model versions in production."""

from __future__ import annotations

from typing import Any

import typer

from tinyfleet.server.cli.client import _table, _ts, _version_id, call, fail, json_option, print_json

alerts_app = typer.Typer(help="Drift alarms about model versions in production.", no_args_is_help=True)


@alerts_app.command("list")
def alerts_list(
    state: str | None = typer.Option(None, help="only alerts in this state: open or resolved"),
    model: str | None = typer.Option(None, help="only this model (with --version)"),
    version: str | None = typer.Option(None, help="only this version x.y.z of --model"),
    as_json: bool = json_option(),
) -> None:
    """Alerts, newest first."""
    params: dict[str, Any] = {}
    if state:
        params["state"] = state
    if model or version:
        if not (model and version):
            fail("--model and --version go together")
        params["model_version_id"] = _version_id(model, version)
    rows = call("GET", "/api/alerts", params=params)
    if as_json:
        print_json(rows)
        return
    _table(
        "alerts",
        ["id", "kind", "version id", "state", "opened", "last seen", "resolved", "message"],
        [
            [
                a["id"],
                a["kind"],
                a["model_version_id"],
                a["state"],
                _ts(a["opened_at"]),
                _ts(a["last_seen_at"]),
                _ts(a["resolved_at"]),
                a["message"],
            ]
            for a in rows
        ],
    )
