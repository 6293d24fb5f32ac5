"""Probes, without the API token: `/healthz` (liveness) and `/readyz` (readiness).

`/healthz` answers 200 as long as the process serves requests. `/readyz` answers 200 only when the
server can do its job: the database answers, its schema is at the migrations' head and, when a broker is
configured, the MQTT gateway is connected (when the broker refuses its credentials, the `mqtt` check
says so: "broker refused the gateway's credentials: ..."). Otherwise 503, with a body naming each
failing check:

    {"ready": false, "failing": ["mqtt"], "detail": "not ready: mqtt: ...",
     "checks": {"database": {"ok": true, "detail": "..."}, "migrations": {...}, "mqtt": {...}}}
"""

from __future__ import annotations

import concurrent.futures
import functools
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tinyfleet.server.api.deps import get_ctx
from tinyfleet.server.context import AppContext
from tinyfleet.server.db import MIGRATIONS_DIR

router = APIRouter(tags=["health"])

DB_CHECK_SECONDS = 5.0  # a database that does not answer within this is as good as down for a probe
# The database check runs here so that a hung connection attempt cannot hold the probe past its deadline.
_db_checks = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="tinyfleet-readyz")


@functools.cache
def _migration_heads() -> frozenset[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(cfg).get_heads())


def _database_revisions(ctx: AppContext) -> frozenset[str]:
    from alembic.runtime.migration import MigrationContext

    with ctx.db.connect() as conn:
        conn.execute(text("SELECT 1"))
        return frozenset(MigrationContext.configure(conn).get_current_heads())


def _check(ok: bool, detail: str) -> dict[str, Any]:
    return {"ok": ok, "detail": detail}


def readiness(ctx: AppContext) -> dict[str, Any]:
    """Each check with its verdict; `ready` when all pass."""
    checks: dict[str, dict[str, Any]] = {}
    future = _db_checks.submit(_database_revisions, ctx)
    try:
        revisions = future.result(timeout=DB_CHECK_SECONDS)
    except concurrent.futures.TimeoutError:
        checks["database"] = _check(False, f"no answer within {DB_CHECK_SECONDS:g} s")
        checks["migrations"] = _check(False, "unknown: the database is unreachable")
    except Exception as exc:  # any driver error: the probe reports it, it does not fail
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        checks["database"] = _check(False, f"unreachable: {reason[0] if reason else type(exc).__name__}")
        checks["migrations"] = _check(False, "unknown: the database is unreachable")
    else:
        checks["database"] = _check(True, "reachable")
        heads = _migration_heads()
        if revisions == heads:
            checks["migrations"] = _check(True, f"at head {', '.join(sorted(heads))}")
        else:
            at = ", ".join(sorted(revisions)) or "empty"
            checks["migrations"] = _check(
                False, f"at {at}, head is {', '.join(sorted(heads))} (run `tinyfleet server migrate`)"
            )
    if ctx.gateway is None:
        checks["mqtt"] = _check(True, "no broker configured")
    elif ctx.gateway.connected.is_set():
        checks["mqtt"] = _check(True, "gateway connected")
    elif ctx.broker_refusal is not None:  # the broker answered "no": retrying will not fix it
        checks["mqtt"] = _check(False, ctx.broker_refusal)
    else:
        checks["mqtt"] = _check(False, "gateway not connected to the broker")
    failing = [name for name, check in checks.items() if not check["ok"]]
    detail = "; ".join(f"{name}: {checks[name]['detail']}" for name in failing)
    return {
        "ready": not failing,
        "failing": failing,
        "detail": f"not ready: {detail}" if failing else "ready",
        "checks": checks,
        # Which replica this is and whether it runs the rollout engine (a follower is ready too).
        "replica": ctx.leadership.describe(),
    }


@router.get("/healthz", summary="Liveness: 200 while the process serves requests")
def healthz(ctx: AppContext = Depends(get_ctx)) -> dict[str, Any]:
    return {
        "ok": True,
        "mqtt_connected": bool(ctx.gateway and ctx.gateway.connected.is_set()),
        "replica": ctx.leadership.name,
        "leader": ctx.leadership.is_leader,
    }


@router.get(
    "/readyz",
    summary="Readiness: 200 when database, migrations and MQTT gateway are fine, else 503",
    responses={503: {"description": "not ready; `failing` names the checks that failed"}},
)
def readyz(ctx: AppContext = Depends(get_ctx)) -> JSONResponse:
    body = readiness(ctx)
    return JSONResponse(body, status_code=200 if body["ready"] else 503)
