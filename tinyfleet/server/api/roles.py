"""Who may call what: ONE table from (method, path template) to the least role it needs, and the checks.

Roles are ordered (viewer < operator < admin): viewers read, operators change the fleet (uploads,
provisioning, rollouts), admins manage users and the audit log and delete things. A route missing from
the table needs admin (fails closed); tests/server/test_roles.py walks the app's routes to find any.

The check runs twice with the same table: `RoleGate` from ApiGuard (limits.py) before any body byte is
read (a viewer's oversized or malformed POST is refused 403, not parsed), and `require_role` on every
/api route, which also hands the handler its caller (`Caller`).
"""

from __future__ import annotations

import re
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from tinyfleet.server.api.limits import UNAUTHORIZED
from tinyfleet.server.services.users import ROLES, Principal, TokenResolver

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROUTE_ROLES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/api/me", VIEWER),
    ("GET", "/api/hardware-classes", VIEWER),
    ("PUT", "/api/hardware-classes/{class_id}", OPERATOR),
    ("GET", "/api/models", VIEWER),
    ("POST", "/api/models", OPERATOR),
    ("GET", "/api/models/{model_id}", VIEWER),
    ("PATCH", "/api/models/{model_id}", OPERATOR),
    ("DELETE", "/api/models/{model_id}", ADMIN),
    ("GET", "/api/models/{model_id}/versions", VIEWER),
    ("POST", "/api/models/{model_id}/versions", OPERATOR),
    ("GET", "/api/versions/{version_id}", VIEWER),
    ("GET", "/api/packages", VIEWER),
    ("POST", "/api/packages", OPERATOR),
    ("GET", "/api/packages/{package_id}", VIEWER),
    ("GET", "/api/packages/{package_id}/download", VIEWER),
    ("GET", "/api/trust-store", VIEWER),
    ("GET", "/api/devices", VIEWER),
    ("POST", "/api/devices", OPERATOR),
    ("POST", "/api/devices/bulk", OPERATOR),
    ("GET", "/api/devices/{device_id}", VIEWER),
    ("PATCH", "/api/devices/{device_id}", OPERATOR),
    ("DELETE", "/api/devices/{device_id}", ADMIN),
    ("POST", "/api/devices/{device_id}/credentials", OPERATOR),
    ("POST", "/api/devices/{device_id}/encryption-key", OPERATOR),
    ("GET", "/api/devices/{device_id}/actions", VIEWER),
    ("POST", "/api/devices/{device_id}/certificate", OPERATOR),
    ("POST", "/api/devices/{device_id}/certificate/revoke", OPERATOR),
    ("GET", "/api/fleet-ca.pem", VIEWER),
    ("GET", "/api/rollouts", VIEWER),
    ("POST", "/api/rollouts", OPERATOR),
    ("GET", "/api/rollouts/{rollout_id}", VIEWER),
    ("GET", "/api/rollouts/{rollout_id}/actions", VIEWER),
    ("POST", "/api/rollouts/{rollout_id}/{command}", OPERATOR),  # pause, resume, rollback, abort
    ("GET", "/api/telemetry", VIEWER),
    ("GET", "/api/telemetry/summary", VIEWER),
    ("GET", "/api/telemetry/series", VIEWER),
    ("GET", "/api/telemetry/compare", VIEWER),
    ("GET", "/api/gateway/stats", VIEWER),
    ("GET", "/api/alerts", VIEWER),
    ("GET", "/api/console/overview", VIEWER),
    ("GET", "/api/console/facets", VIEWER),
    ("GET", "/api/console/rollouts/{rollout_id}", VIEWER),
    ("GET", "/api/console/devices/{device_id}", VIEWER),
    ("GET", "/api/console/models", VIEWER),
    # Users and tokens: anyone manages their own tokens; other users' need admin (checked in api/users.py).
    ("GET", "/api/users", ADMIN),
    ("POST", "/api/users", ADMIN),
    ("POST", "/api/users/{name}/disable", ADMIN),
    ("GET", "/api/tokens", VIEWER),
    ("POST", "/api/tokens", VIEWER),
    ("DELETE", "/api/tokens/{token_id}", VIEWER),
    ("GET", "/api/audit", ADMIN),
)
UNLISTED_ROLE = ADMIN
PRINCIPAL_KEY = "tinyfleet.principal"  # where the gate leaves the caller in the ASGI scope


def _compile(template: str) -> re.Pattern[str]:
    out, pos = "", 0
    for m in re.finditer(r"\{(\w+)(:path)?\}", template):
        out += re.escape(template[pos : m.start()])
        out += f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
        pos = m.end()
    return re.compile("^" + out + re.escape(template[pos:]) + "/?$")


# Fewest parameters first: a literal segment (/api/devices/bulk) wins over a parameter (/{device_id}).
_MATCHERS = sorted(
    ((method, _compile(tpl), tpl, role) for method, tpl, role in ROUTE_ROLES),
    key=lambda m: m[2].count("{"),
)


def match_route(method: str, path: str) -> tuple[str, str, dict[str, str]] | None:
    """(template, role, path parameters) of the table's entry for this request; None when unlisted."""
    method = "GET" if method == "HEAD" else method
    for m, pattern, template, role in _MATCHERS:
        found = pattern.match(path) if m == method else None
        if found:
            return template, role, found.groupdict()
    return None


def refusal(principal: Principal | None, method: str, path: str) -> tuple[int, str] | None:
    """(status, detail) when this caller may not make this request, None when it may."""
    if principal is None:
        return 401, UNAUTHORIZED
    matched = match_route(method, path)
    needed = matched[1] if matched else UNLISTED_ROLE
    if principal.allows(needed):
        return None
    what = f"{method} {matched[0]}" if matched else f"{method} {path} (not in the role table)"
    return 403, f"{what} needs the {needed} role; {principal.name} is {principal.role}"


def bearer(authorization: bytes | str | None) -> str | None:
    """The token of `Authorization: Bearer <token>` (scheme case-insensitive, as fastapi's HTTPBearer)."""
    if not authorization:
        return None
    text = authorization.decode("latin-1") if isinstance(authorization, bytes) else authorization
    scheme, _, token = text.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class RoleGate:
    """ApiGuard's check before the body: resolves the token (from the cache, else the database on a
    worker thread) and leaves the principal in the scope for `require_role` and the audit log."""

    def __init__(self, resolver: TokenResolver) -> None:
        self.resolver = resolver

    async def __call__(self, scope: Scope, authorization: bytes | None) -> tuple[int, str] | None:
        token = bearer(authorization)
        principal = None
        if token is not None:
            principal = self.resolver.cached(token) or await anyio.to_thread.run_sync(
                self.resolver.resolve, token
            )
        scope[PRINCIPAL_KEY] = principal
        return refusal(principal, scope["method"], scope["path"])


_bearer = HTTPBearer(
    auto_error=False, description="a user's API token (or TINYFLEET_API_TOKEN in development)"
)


def require_role(
    request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Principal:
    """The caller, checked against ROUTE_ROLES (401 unknown token, 403 role too low)."""
    principal: Principal | None
    if PRINCIPAL_KEY in request.scope:
        principal = request.scope[PRINCIPAL_KEY]
    else:  # an app without ApiGuard in front
        resolver: TokenResolver = request.app.state.tokens
        principal = resolver.resolve(creds.credentials) if creds is not None else None
    refused = refusal(principal, request.method, request.url.path)
    if refused is not None:
        headers = {"WWW-Authenticate": "Bearer"} if refused[0] == 401 else None
        raise HTTPException(status_code=refused[0], detail=refused[1], headers=headers)
    assert principal is not None
    return principal


Caller = Annotated[Principal, Depends(require_role)]


def roles_markdown() -> str:
    """The README's table of routes and roles (tests/server/test_roles.py keeps the two equal)."""
    lines = ["| route | least role |", "| --- | --- |"]
    for method, template, role in sorted(ROUTE_ROLES, key=lambda r: (ROLES.index(r[2]), r[1], r[0])):
        lines.append(f"| `{method} {template}` | {role} |")
    return "\n".join(lines)
