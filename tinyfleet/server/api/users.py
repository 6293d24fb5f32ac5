"""Users, roles and API tokens: GET /api/me, /api/users (admin), /api/tokens (one's own; admin: anyone's).

A token's plaintext is in the answer to POST /api/tokens and nowhere else, ever again.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from tinyfleet.server.api.deps import DbId, get_ctx
from tinyfleet.server.api.openapi_errors import REF
from tinyfleet.server.api.roles import Caller
from tinyfleet.server.context import AppContext
from tinyfleet.server.models import User
from tinyfleet.server.services import users as svc
from tinyfleet.server.services.errors import Conflict, Invalid
from tinyfleet.server.services.users import Principal, TokenResolver

router = APIRouter(tags=["users"])
NO_SUCH_USER: dict[str, Any] = {
    "description": "no such user",
    "content": {"application/json": {"schema": REF}},
}
Role = Literal["viewer", "operator", "admin"]


class Me(BaseModel):
    name: str
    role: Role


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Role


class UserPublic(BaseModel):
    name: str
    role: Role
    created_at: float
    disabled: bool


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    user: str | None = Field(default=None, max_length=64, description="whose token (admin only)")


class TokenPublic(BaseModel):
    id: int
    user: str
    name: str
    prefix: str
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


class TokenCreated(TokenPublic):
    token: str = Field(description="the token itself: shown this once, only its hash is kept")


def _resolver(request: Request) -> TokenResolver:
    resolver: TokenResolver = request.app.state.tokens
    return resolver


def _admin_for_others(caller: Principal, whose: str | None) -> None:
    if whose is not None and whose != caller.name and not caller.allows("admin"):
        raise HTTPException(status_code=403, detail="other users' tokens need the admin role")


@router.get("/me", response_model=Me)
def me(caller: Caller) -> Me:
    return Me(name=caller.name, role=caller.role)  # type: ignore[arg-type]


@router.get("/users", response_model=list[UserPublic])
def list_users(ctx: AppContext = Depends(get_ctx)) -> list[UserPublic]:
    with ctx.session() as s:
        return [UserPublic(**svc.user_public(u)) for u in svc.list_users(s)]


@router.post("/users", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, ctx: AppContext = Depends(get_ctx)) -> UserPublic:
    with ctx.session() as s:
        return UserPublic(**svc.user_public(svc.create_user(s, body.name, body.role)))


@router.post("/users/{name}/disable", response_model=UserPublic)
def disable_user(name: str, request: Request, ctx: AppContext = Depends(get_ctx)) -> UserPublic:
    with ctx.session() as s:
        user = svc.disable_user(s, name)
        if user.role == "admin" and not svc.has_admin(s):
            raise Conflict(f"{name!r} is the last enabled admin: create another admin first")
        out = UserPublic(**svc.user_public(user))
    _resolver(request).forget(user_id=user.id)  # after the commit: its tokens stop working now
    return out


@router.get("/tokens", response_model=list[TokenPublic], responses={404: NO_SUCH_USER})
def list_tokens(
    caller: Caller,
    user: str | None = Query(default=None, max_length=64, description="whose tokens (admin only)"),
    ctx: AppContext = Depends(get_ctx),
) -> list[TokenPublic]:
    """The caller's tokens (admin: `user`'s)."""
    _admin_for_others(caller, user)
    with ctx.session() as s:
        if user is None and caller.user_id is None:
            return []  # the bootstrap token is nobody's and has no tokens
        user_id = svc.get_user(s, user).id if user is not None else caller.user_id
        return [TokenPublic(**svc.token_public(t, n)) for t, n in svc.list_tokens(s, user_id)]


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(body: TokenCreate, caller: Caller, ctx: AppContext = Depends(get_ctx)) -> TokenCreated:
    """A new token for the caller (admin: for `user`); the answer is the only time it is shown."""
    _admin_for_others(caller, body.user)
    whose = body.user or (caller.name if caller.user_id is not None else None)
    if whose is None:
        raise Invalid('the bootstrap token belongs to no user: give "user"')
    with ctx.session() as s:
        row, plaintext = svc.create_token(s, svc.get_user(s, whose), body.name)
        return TokenCreated(**svc.token_public(row, whose), token=plaintext)


@router.delete("/tokens/{token_id}", response_model=TokenPublic)
def revoke_token(
    token_id: DbId, caller: Caller, request: Request, ctx: AppContext = Depends(get_ctx)
) -> TokenPublic:
    """Revoke a token (one's own; admin: anyone's); it is refused from this moment."""
    with ctx.session() as s:
        token = svc.get_token(s, token_id)
        if token.user_id != caller.user_id and not caller.allows("admin"):
            raise HTTPException(status_code=403, detail="other users' tokens need the admin role")
        svc.revoke_token(s, token)
        owner = s.get(User, token.user_id)
        out = TokenPublic(**svc.token_public(token, owner.name if owner else "?"))
    _resolver(request).forget(token_id=token_id)
    return out
