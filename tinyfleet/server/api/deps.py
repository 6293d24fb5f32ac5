"""Shared route dependencies: the app context, the bearer token check, uploads spooled to disk."""

from __future__ import annotations

import hmac
import tempfile
from collections.abc import AsyncIterator
from typing import Annotated, BinaryIO

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tinyfleet.server.api.limits import UNAUTHORIZED, too_large
from tinyfleet.server.context import AppContext

_bearer = HTTPBearer(auto_error=False, description="TINYFLEET_API_TOKEN")


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def require_token(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    # ApiGuard (limits.py) checks the same before any body is read; this keeps the check on the routes
    # themselves (and the security scheme in the OpenAPI schema).
    token = get_ctx(request).settings.api_token
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(status_code=401, detail=UNAUTHORIZED)


async def upload_file(request: Request) -> AsyncIterator[BinaryIO]:
    """The request body spooled to a temporary file on disk (deleted after the response), refused with
    413 beyond the upload limit: an upload is never held whole in memory while it arrives. ApiGuard
    already refuses a too large Content-Length; this counts what actually arrives."""
    limit = get_ctx(request).settings.max_upload_bytes
    with tempfile.TemporaryFile(prefix="tinyfleet-upload-") as file:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(status_code=413, detail=too_large(limit))
            file.write(chunk)
        file.seek(0)
        yield file


OCTET_STREAM_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}

MAX_DB_ID = 2**31 - 1
U32 = 0xFFFFFFFF
# Integer ids in paths and queries are bounded so that no database ever sees an out-of-range number.
DbId = Annotated[int, Path(ge=0, le=MAX_DB_ID)]
OptDbIdQuery = Annotated[int | None, Query(ge=0, le=MAX_DB_ID)]
OptU32Query = Annotated[int | None, Query(ge=0, le=U32)]
