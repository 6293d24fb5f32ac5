"""`tinyfleet users|tokens|audit ...`: users with roles, their API tokens, the audit log.

All go through the API, except `users create --offline`, which writes to the database directly
(TINYFLEET_DATABASE_URL): how a production server gets its first admin, since production accepts no
bootstrap token (`TINYFLEET_MODE=production` refuses to start without an enabled admin user).
"""

from __future__ import annotations

import time
from typing import Any

import typer

from tinyfleet.server.cli.client import _table, _ts, call, console, fail, json_option, print_json

users_app = typer.Typer(help="Users and their roles (viewer, operator, admin).", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens: yours, or (admin) anyone's.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log of mutating API calls (admin).", no_args_is_help=True)

ROLE_HELP = "viewer (reads), operator (uploads, provisioning, rollouts) or admin (users, audit, deletes)"
DURATIONS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _print_users(users: list[dict[str, Any]]) -> None:
    _table(
        "users",
        ["name", "role", "created", "disabled"],
        [[u["name"], u["role"], _ts(u["created_at"]), "yes" if u["disabled"] else ""] for u in users],
    )


def _print_token(created: dict[str, Any]) -> None:
    console.print(f"token {created['name']!r} of {created['user']} (id {created['id']}):")
    console.print(created["token"], soft_wrap=True)
    console.print("[yellow]shown this once: only its hash is kept[/]")


@users_app.command("list")
def users_list(as_json: bool = json_option()) -> None:
    """All users."""
    users = call("GET", "/api/users")
    if as_json:
        print_json(users)
    else:
        _print_users(users)


def _create_offline(name: str, role: str, token_name: str | None) -> dict[str, Any]:
    import os

    from sqlalchemy.exc import SQLAlchemyError

    from tinyfleet.server.config import DEFAULT_DATABASE_URL
    from tinyfleet.server.db import make_engine, session_scope, upgrade_to_head
    from tinyfleet.server.services import users as svc
    from tinyfleet.server.services.errors import ServiceError

    url = os.environ.get("TINYFLEET_DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        engine = make_engine(url)
        try:
            upgrade_to_head(engine)
            with session_scope(engine) as s:
                user = svc.create_user(s, name, role)
                out = svc.user_public(user)
                if token_name is not None:
                    row, plaintext = svc.create_token(s, user, token_name)
                    out["token"] = {**svc.token_public(row, name), "token": plaintext}
            return out
        finally:
            engine.dispose()
    except ServiceError as exc:
        fail(exc.message)
    except SQLAlchemyError as exc:
        fail(f"database {url}: {str(exc.orig if hasattr(exc, 'orig') else exc).strip().splitlines()[0]}")


@users_app.command("create")
def users_create(
    name: str = typer.Argument(..., help="1-64 of a-z 0-9 . _ -"),
    role: str = typer.Option(..., help=ROLE_HELP),
    token: str | None = typer.Option("initial", help="name of a first token to make (printed once)"),
    no_token: bool = typer.Option(False, "--no-token", help="make no first token"),
    offline: bool = typer.Option(
        False, "--offline", help="write to TINYFLEET_DATABASE_URL directly (no server, no API token)"
    ),
    as_json: bool = json_option(),
) -> None:
    """Create a user, and a first token for it unless --no-token."""
    token_name = None if no_token else token
    if offline:
        out = _create_offline(name, role, token_name)
    else:
        out = call("POST", "/api/users", json={"name": name, "role": role})
        if token_name is not None:
            out["token"] = call("POST", "/api/tokens", json={"name": token_name, "user": name})
    if as_json:
        print_json(out)
        return
    console.print(f"user {out['name']} ({out['role']}) created")
    if "token" in out:
        _print_token(out["token"])


@users_app.command("disable")
def users_disable(
    name: str = typer.Argument(..., help="the user to disable"), as_json: bool = json_option()
) -> None:
    """Disable a user: none of its tokens works any more (it stays in the audit log)."""
    out = call("POST", f"/api/users/{name}/disable")
    if as_json:
        print_json(out)
    else:
        console.print(f"user {out['name']} disabled")


@tokens_app.command("list")
def tokens_list(
    user: str | None = typer.Option(None, help="another user's tokens (admin)"), as_json: bool = json_option()
) -> None:
    """Your tokens (or --user's): prefix, name, dates; never the token itself."""
    rows = call("GET", "/api/tokens", params={"user": user} if user else {})
    if as_json:
        print_json(rows)
        return
    _table(
        "tokens",
        ["id", "user", "name", "prefix", "created", "last used", "revoked"],
        [
            [
                t["id"],
                t["user"],
                t["name"],
                t["prefix"] + "...",
                _ts(t["created_at"]),
                _ts(t["last_used_at"]),
                _ts(t["revoked_at"]) if t["revoked_at"] else "",
            ]
            for t in rows
        ],
    )


@tokens_app.command("create")
def tokens_create(
    name: str = typer.Argument(..., help="what the token is for, e.g. laptop or ci"),
    user: str | None = typer.Option(None, help="for another user (admin)"),
    as_json: bool = json_option(),
) -> None:
    """A new token, printed this once."""
    body: dict[str, Any] = {"name": name}
    if user:
        body["user"] = user
    out = call("POST", "/api/tokens", json=body)
    if as_json:
        print_json(out)
    else:
        _print_token(out)


@tokens_app.command("revoke")
def tokens_revoke(token_id: int = typer.Argument(..., help="the id from `tokens list`")) -> None:
    """Revoke a token: refused from now on."""
    out = call("DELETE", f"/api/tokens/{token_id}")
    console.print(f"token {out['id']} ({out['name']} of {out['user']}) revoked")


def _since(text: str) -> float:
    """'30m', '12h', '7d' or seconds ago -> Unix time."""
    text = text.strip().lower()
    unit = DURATIONS.get(text[-1:], 0.0)
    try:
        ago = float(text[:-1]) * unit if unit else float(text)
    except ValueError:
        fail(f"--since must be seconds or a number with s/m/h/d (e.g. 2h), got {text!r}")
    return time.time() - ago


@audit_app.command("list")
def audit_list(
    actor: str | None = typer.Option(None, help="only calls by this user (or bootstrap, unknown)"),
    since: str | None = typer.Option(None, help="only the last 30m, 12h, 7d, ... (or seconds)"),
    limit: int = typer.Option(100, help="at most this many entries (newest first)"),
    as_json: bool = json_option(),
) -> None:
    """Mutating API calls, newest first: who, what, the answer."""
    params: dict[str, Any] = {"limit": limit}
    if actor:
        params["actor"] = actor
    if since:
        params["since"] = _since(since)
    rows = call("GET", "/api/audit", params=params)
    if as_json:
        print_json(rows)
        return
    _table(
        "audit log",
        ["at", "actor", "call", "target", "status", "detail"],
        [
            [
                _ts(e["at"]),
                e["actor"],
                f"{e['method']} {e['path']}",
                e["target"],
                e["status_code"],
                e["detail"],
            ]
            for e in rows
        ],
    )
