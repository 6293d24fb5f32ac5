"""The audit log: every mutating /api call (POST, PUT, PATCH, DELETE), refused ones included, and
GET /api/audit to read it.

`AuditLog` is a pure ASGI middleware in front of ApiGuard, so it also sees the 401/403/413 answers
given before routing. It writes one row after the response has been sent: no database round trip is
added before the handler, and a failed write is logged without touching the answer. Rows hold who
(the principal ApiGuard resolved, or 'unknown'), the method and path, the path's parameters as target,
the status and the error's one line; never a token or a request body.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import anyio.to_thread
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tinyfleet.server.api.deps import get_ctx
from tinyfleet.server.api.roles import PRINCIPAL_KEY, match_route
from tinyfleet.server.context import AppContext
from tinyfleet.server.db import session_scope
from tinyfleet.server.models import AuditEntry
from tinyfleet.server.services.users import UNKNOWN, Principal

log = logging.getLogger(__name__)
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ERROR_BODY_BYTES = 4096  # enough of an error answer to read its one-line detail


def audited(method: str, path: str) -> bool:
    return method in MUTATING and (path == "/api" or path.startswith("/api/"))


def _target(method: str, path: str) -> str | None:
    matched = match_route(method, path)
    if matched is None or not matched[2]:
        return None
    return " ".join(f"{k}={v}" for k, v in matched[2].items())[:200]


def _detail(status: int, body: bytes) -> str:
    if status < 400:
        return ""
    try:
        detail = json.loads(body).get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    return str(detail)[:500]


class AuditLog:
    """Records mutating /api calls; `db()` gives the engine to write to."""

    def __init__(self, app: ASGIApp, db: Callable[[], Engine]) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audited(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees when the app raises before answering
        body = bytearray()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body" and status >= 400 and len(body) < ERROR_BODY_BYTES:
                body.extend(message.get("body", b"")[: ERROR_BODY_BYTES - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            principal: Principal | None = scope.get(PRINCIPAL_KEY)
            entry = AuditEntry(
                at=time.time(),
                actor=principal.name if principal is not None else UNKNOWN,
                method=scope["method"],
                path=scope["path"][:500],
                target=_target(scope["method"], scope["path"]),
                status_code=status,
                detail=_detail(status, bytes(body)),
            )
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._write, entry)

    def _write(self, entry: AuditEntry) -> None:
        try:
            with session_scope(self.db()) as session:
                session.add(entry)
        except Exception as exc:  # the call has been answered: losing its audit row must not fail it
            log.error("audit log: cannot record %s %s: %s", entry.method, entry.path, exc)


router = APIRouter(tags=["users"])


class AuditPublic(BaseModel):
    id: int
    at: float
    actor: str
    method: str
    path: str
    target: str | None
    status_code: int
    detail: str


@router.get("/audit", response_model=list[AuditPublic])
def list_audit(
    actor: str | None = Query(default=None, max_length=64),
    since: float | None = Query(default=None, ge=0, description="Unix seconds: entries at or after"),
    limit: int = Query(default=100, ge=1, le=10000),
    ctx: AppContext = Depends(get_ctx),
) -> list[AuditPublic]:
    """Mutating calls, newest first."""
    stmt = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    if actor is not None:
        stmt = stmt.where(AuditEntry.actor == actor)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    with ctx.session() as s:
        return [AuditPublic(**e.model_dump()) for e in s.exec(stmt)]
