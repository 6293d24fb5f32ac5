"""Shared route dependencies: the app context, the bearer token check, bounded raw request bodies."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tinyfleet.server.context import AppContext

_bearer = HTTPBearer(auto_error=False, description="TINYFLEET_API_TOKEN")


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def require_token(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
    token = get_ctx(request).settings.api_token
    if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
        raise HTTPException(status_code=401, detail="missing or wrong API token (Authorization: Bearer ...)")


async def raw_body(request: Request) -> bytes:
    """The request body as bytes, refused with 413 beyond the configured upload limit."""
    limit = get_ctx(request).settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status_code=413, detail=f"upload above the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status_code=413, detail=f"upload above the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


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
