"""`/broker/auth/{user,vhost,resource,topic}`: RabbitMQ's HTTP auth backend asks these (issue 16).

Not under /api and without a token: RabbitMQ 3.10's backend sends form fields only (POST,
application/x-www-form-urlencoded, parsed here without a multipart library). They are mounted only with
TINYFLEET_BROKER_AUTH_HTTP=on (always routed, so the app is described without a context, but 404 while
off); they answer `allow`/`deny` and reveal nothing else, but keep them
reachable by the brokers only (docs/DEPLOY.md). Rules: services/broker_authz.py.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse
from sqlmodel import Session

from tinyfleet.server.api.deps import get_ctx
from tinyfleet.server.services import broker_authz as authz


def _enabled(request: Request) -> None:
    if not get_ctx(request).settings.broker_auth_http:
        raise HTTPException(status_code=404, detail="Not Found")


router = APIRouter(prefix="/broker/auth", include_in_schema=False, dependencies=[Depends(_enabled)])
MAX_BODY = 8192


async def _fields(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_BODY:
        return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return {}
    return {key: values[0] for key, values in parsed.items()}


def _answer(ok: bool) -> PlainTextResponse:
    return PlainTextResponse("allow" if ok else "deny")


@router.post("/user")
async def user(request: Request) -> PlainTextResponse:
    ctx, f = get_ctx(request), await _fields(request)

    def check() -> bool:
        with Session(ctx.db) as session:
            return authz.user_allowed(
                session, ctx.settings.device_auth, f.get("username", ""), f.get("password")
            )

    return _answer(await anyio.to_thread.run_sync(check))


@router.post("/vhost")
async def vhost(request: Request) -> PlainTextResponse:
    f = await _fields(request)
    return _answer(authz.vhost_allowed(f.get("username", ""), f.get("vhost", ""), f.get("client_id")))


@router.post("/resource")
async def resource(request: Request) -> PlainTextResponse:
    f = await _fields(request)
    keys = ("username", "vhost", "resource", "name", "permission")
    return _answer(authz.resource_allowed(*(f.get(k, "") for k in keys)))


@router.post("/topic")
async def topic(request: Request) -> PlainTextResponse:
    f = await _fields(request)
    return _answer(
        authz.topic_allowed(
            f.get("username", ""),
            f.get("vhost", ""),
            f.get("name", ""),
            f.get("permission", ""),
            f.get("routing_key", ""),
            f.get("client_id"),
        )
    )
