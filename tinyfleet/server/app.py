"""The FastAPI application: `create_app(settings)`.

Building the app runs the migrations (`upgrade head`) and loads the keys; the MQTT gateway and the
rollout driver start with the app's lifespan when `background=True`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tinyfleet.server import logs
from tinyfleet.server.api import (
    alerts,
    broker_auth,
    certs,
    devices,
    health,
    metrics,
    models,
    packages,
    rollouts,
    telemetry,
)
from tinyfleet.server.api import audit as audit_api
from tinyfleet.server.api import console as console_api
from tinyfleet.server.api import users as users_api
from tinyfleet.server.api.audit import AuditLog
from tinyfleet.server.api.limits import ApiGuard
from tinyfleet.server.api.openapi_errors import document_errors
from tinyfleet.server.api.roles import RoleGate, require_role
from tinyfleet.server.config import Settings, settings_from_env
from tinyfleet.server.context import AppContext
from tinyfleet.server.services.errors import ServiceError
from tinyfleet.server.services.rollups import RetentionJob
from tinyfleet.server.services.users import TokenResolver, require_admin_user

log = logging.getLogger(__name__)
FASTAPI_BODY_ERROR = "There was an error parsing the body"
DASHBOARD = Path(__file__).resolve().parent / "dashboard" / "index.html"


def _validation_message(exc: RequestValidationError) -> str:
    """Pydantic's error list as one line: 'body.waves.0: a wave gives ...; query.version: ...'."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_r: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == FASTAPI_BODY_ERROR:
            # a body that is not even text (invalid UTF-8): refused like any other malformed JSON
            return JSONResponse({"detail": "body: not valid JSON (UTF-8)"}, status_code=422)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(IntegrityError)
    async def _integrity(_r: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity error: %s", exc.orig)
        return JSONResponse({"detail": "conflicts with existing data (concurrent change?)"}, status_code=409)

    @app.exception_handler(DataError)
    async def _data(_r: Request, exc: DataError) -> JSONResponse:
        # e.g. a NUL character, which PostgreSQL text cannot hold: the request's fault, not the server's
        log.info("data error: %s", exc.orig)
        return JSONResponse({"detail": "a value in the request cannot be stored (invalid characters?)"}, 422)

    @app.exception_handler(OperationalError)
    async def _db_down(_r: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error: %s", exc.orig)
        return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503)


def _bootstrap_token(settings: Settings) -> str | None:
    """TINYFLEET_API_TOKEN is the admin 'bootstrap' in development only; production has users."""
    return None if settings.production else settings.api_token


def _retention_job(context: AppContext) -> RetentionJob:
    s = context.settings
    return RetentionJob(
        context.db,
        s.telemetry_raw_retention_seconds,
        s.telemetry_rollup_retention_seconds,
        s.telemetry_prune_seconds,
    )


def create_app(
    settings: Settings | None = None, *, ctx: AppContext | None = None, background: bool = True
) -> FastAPI:
    """The control plane app. Give `ctx` to share one context (tests drive its rollout driver directly)."""
    context = ctx or AppContext(settings or settings_from_env())
    # ConfigError: production has no bootstrap token to fall back on. (Not for a stand-in context that
    # only describes the routes, as tests/server/test_schemathesis.py makes.)
    if isinstance(context, AppContext) and context.settings.production:
        require_admin_user(context.db)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Here, not when building the app: uvicorn has set up its log handlers by now.
        logs.apply_format(context.settings.log_format)
        retention = _retention_job(context)
        if background:
            context.leader_jobs.append(retention)  # started by the leader replica only
            context.start_background()
        try:
            yield
        finally:
            if background:
                retention.stop()
                context.stop_background()

    # /docs and /redoc with Swagger UI and ReDoc served from the package (no CDN: they work offline).
    app = FastAPIOffline(
        static_url="/static/docs",
        title="tinyfleet control plane",
        version="0.1.0",
        description="Model registry, signed packages, devices, rollouts in waves, telemetry.",
        lifespan=lifespan,
    )
    app.state.ctx = context
    _install_error_handlers(app)
    # In front of routing: 401/403 and 413 before any body byte is read (limits.py, roles.py), and the
    # audit log in front of that, so that it records those refusals too.
    app.state.tokens = TokenResolver(lambda: context.db, lambda: _bootstrap_token(context.settings))
    app.add_middleware(ApiGuard, settings=lambda: context.settings, authorize=RoleGate(app.state.tokens))
    app.add_middleware(AuditLog, db=lambda: context.db)
    auth = [Depends(require_role)]  # the caller's role against the route's (roles.py)
    app.include_router(users_api.router, prefix="/api", dependencies=auth)
    app.include_router(audit_api.router, prefix="/api", dependencies=auth)
    for module in (models, packages, devices, rollouts, telemetry, alerts):
        app.include_router(module.router, prefix="/api", dependencies=auth)
    app.include_router(console_api.router, prefix="/api", dependencies=auth)
    app.include_router(certs.router, prefix="/api", dependencies=auth)  # device certificates
    app.include_router(console_api.assets)  # the console's scripts and plotly.min.js: no data, no token
    app.include_router(health.router)  # probes: no token
    app.include_router(broker_auth.router)  # a RabbitMQ cluster's auth backend (404 unless enabled), no token
    app.include_router(metrics.router)  # its own token check (TINYFLEET_METRICS_PUBLIC)

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(DASHBOARD, media_type="text/html")

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        # every operation's error responses, with the one body they all have (openapi_errors.py)
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
