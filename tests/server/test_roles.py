"""The role table (tinyfleet/server/api/roles.py) against the app's real routes: every /api route is in
it, and each answers every role as the table says (401 unknown token, 403 role too low, else the
handler's own answer, which with dummy values is usually 404 or 422)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from tests.support.identity import bearer, tokens_by_role
from tests.support.inprocess_api import SyncASGITransport
from tinyfleet.server.api.roles import ROUTE_ROLES, match_route, require_role, roles_markdown
from tinyfleet.server.app import create_app
from tinyfleet.server.services.users import RANK, ROLES, TokenResolver

README = Path(__file__).resolve().parents[2] / "README.md"
NOT_API = ("/docs", "/redoc", "/openapi.json", "/static", "/console", "/healthz", "/readyz", "/metrics")
DUMMY = {"command": "pause", "path": "x"}  # other parameters get "999999" (ids) or "nobody" (names)


def app_routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, full path template) of every route, through included routers (whose representation
    differs across FastAPI versions: a route with `path`, or a router with `original_router`)."""

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for r in routes:
            if hasattr(r, "original_router"):
                yield from walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif getattr(r, "methods", None) and getattr(r, "path", None) is not None:
                for method in sorted(r.methods - {"HEAD"}):
                    yield method, prefix + r.path
            elif hasattr(r, "routes") and getattr(r, "path", None) is not None:
                yield from walk(r.routes, prefix + r.path)  # a Mount

    yield from walk(app.routes, "")


def api_routes(app: Any) -> list[tuple[str, str]]:
    found = [(m, p) for m, p in app_routes(app) if p.startswith("/api/") and not p.startswith(NOT_API)]
    assert len(found) > 30, "the route walker found too few routes: has FastAPI's routing changed?"
    return found


@pytest.fixture
def app_of(api: Any) -> Iterator[Callable[..., tuple[Any, httpx.Client]]]:
    """Another app on the api fixture's context (same database, own token cache), with a client
    holding the bootstrap token: for tests that need the app object itself."""
    clients: list[httpx.Client] = []

    def make() -> tuple[Any, httpx.Client]:
        app = create_app(ctx=api.ctx, background=False)
        headers = {"Authorization": f"Bearer {api.ctx.settings.api_token}"}
        clients.append(httpx.Client(transport=SyncASGITransport(app), base_url="http://t", headers=headers))
        return app, clients[-1]

    yield make
    for client in clients:
        client.close()


def fill(template: str) -> str:
    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        return DUMMY.get(name, "999999" if name.endswith("id") else "nobody")

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, template)


def test_every_api_route_is_in_the_role_table_and_every_entry_is_a_route(api, app_of) -> None:
    routes = set(api_routes(app_of()[0]))
    table = {(m, t) for m, t, _ in ROUTE_ROLES}
    assert sorted(routes - table) == [], "add these routes to ROUTE_ROLES in tinyfleet/server/api/roles.py"
    assert sorted(table - routes) == [], "ROUTE_ROLES names routes the app does not have"
    assert len(table) == len(ROUTE_ROLES), "a route is in the table twice"
    # and the OpenAPI schema agrees with the walk (it sees the routes another way)
    schema = api.ok("GET", "/openapi.json")
    paths = schema["paths"].items()
    documented = {(m.upper(), p) for p, item in paths for m in item if p.startswith("/api/")}
    assert documented == routes


def test_each_route_answers_each_role_as_the_table_says(api, app_of) -> None:
    tokens = {**tokens_by_role(api), "unknown": "tf_not-a-token"}
    app, client = app_of()
    wrong = []
    for method, template in api_routes(app):
        needed = next(role for m, t, role in ROUTE_ROLES if (m, t) == (method, template))
        url = fill(template)
        assert match_route(method, url) is not None and match_route(method, url)[0] == template, url
        for who, token in tokens.items():
            kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
            status = client.request(method, url, headers=bearer(token), **kwargs).status_code
            if who == "unknown":
                expected_ok = status == 401
            elif RANK[who] >= RANK[needed]:
                expected_ok = status not in (401, 403)
            else:
                expected_ok = status == 403
            if not expected_ok:
                wrong.append(f"{who} {method} {url} ({needed}): {status}")
    assert wrong == []


def test_refused_before_the_body_is_read(api) -> None:
    viewer = tokens_by_role(api)["viewer"]
    headers = {**bearer(viewer), "Content-Type": "application/json"}
    resp = api.client.post("/api/devices", content=b"{not json", headers=headers)
    assert resp.status_code == 403
    assert resp.json() == {"detail": "POST /api/devices needs the operator role; vera is viewer"}
    big = {**headers, "Content-Length": str(10**12)}
    assert api.client.post("/api/packages", content=b"", headers=big).status_code == 403


def test_an_unlisted_route_needs_admin(api, app_of) -> None:
    """A route someone forgot to put in the table: refused to all but admin, and the walk finds it."""
    app, client = app_of()
    extra = APIRouter()

    @extra.get("/not-in-the-table")
    def unlisted() -> dict[str, str]:
        return {"ok": "yes"}

    app.include_router(extra, prefix="/api", dependencies=[Depends(require_role)])
    table = {(m, t) for m, t, _ in ROUTE_ROLES}
    assert ("GET", "/api/not-in-the-table") in set(api_routes(app)) - table
    tokens = tokens_by_role(api)
    for role in ("viewer", "operator"):
        resp = client.get("/api/not-in-the-table", headers=bearer(tokens[role]))
        assert resp.status_code == 403 and "not in the role table" in resp.json()["detail"]
    resp = client.get("/api/not-in-the-table", headers=bearer(tokens["admin"]))
    assert resp.status_code == 200 and resp.json() == {"ok": "yes"}


def test_the_dependency_checks_roles_without_the_guard(api) -> None:
    """require_role holds on its own (an app mounted without ApiGuard in front)."""
    tokens = tokens_by_role(api)
    bare = FastAPI()
    bare.state.tokens = TokenResolver(lambda: api.ctx.db, lambda: None)
    router = APIRouter()

    @router.post("/devices")
    def provision() -> dict[str, str]:
        return {"ok": "yes"}

    bare.include_router(router, prefix="/api", dependencies=[Depends(require_role)])
    with httpx.Client(transport=SyncASGITransport(bare), base_url="http://bare.test") as c:
        assert c.post("/api/devices", headers=bearer(tokens["viewer"])).status_code == 403
        assert c.post("/api/devices", headers=bearer(tokens["operator"])).json() == {"ok": "yes"}
        assert c.post("/api/devices", headers=bearer("tf_unknown")).status_code == 401
        assert c.post("/api/devices").status_code == 401


def test_gate_answers_from_the_cache(api, app_of) -> None:
    """Once resolved, a token's check needs no database: RoleGate's fast path is a dict lookup."""
    token = tokens_by_role(api)["operator"]
    resolver: TokenResolver = app_of()[0].state.tokens
    assert resolver.cached(token) is None
    assert resolver.resolve(token) is not None
    cached = resolver.cached(token)
    assert cached is not None and cached.name == "otto" and cached.role == "operator"


def test_roles_are_ordered_and_every_table_role_exists() -> None:
    assert ROLES == ("viewer", "operator", "admin")
    assert {role for _, _, role in ROUTE_ROLES} <= set(ROLES)
    for method, template, role in ROUTE_ROLES:
        if method == "GET" and template not in ("/api/users", "/api/audit"):
            assert role == "viewer", template
        if method == "DELETE" and not template.startswith("/api/tokens/"):
            assert role == "admin", template


def test_readme_roles_table_is_generated_from_the_code() -> None:
    assert roles_markdown() in README.read_text(encoding="utf-8"), (
        "README.md's roles table is stale: paste tinyfleet.server.api.roles.roles_markdown()"
    )


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_scheme_is_case_insensitive(api, scheme: str) -> None:
    token = tokens_by_role(api)["viewer"]
    assert api.ok("GET", "/api/me", headers={"Authorization": f"{scheme} {token}"})["name"] == "vera"
