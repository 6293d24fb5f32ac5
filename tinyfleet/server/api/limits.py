"""The guard in front of routing: the API token and body size limits, before any body byte is read.

FastAPI parses a JSON body before it runs route dependencies, so a token check in a dependency comes
too late: an unauthenticated client could make the server read (and hold) any amount of data, and
malformed JSON got 422 instead of 401. `ApiGuard` is a pure ASGI middleware: for /api/* it answers 401
(unknown token) or 403 (role too low, api/roles.py) from the headers alone, and for every route it
refuses a body above its limit with 413, from Content-Length when given and while streaming otherwise.
Upload routes (UPLOADS) get `max_upload_bytes`, every other route `max_json_bytes` (or its own larger
limit in LARGE_JSON).
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNAUTHORIZED = "missing or wrong API token (Authorization: Bearer ...)"
# (method, path) of the routes whose body is an upload. By path rather than by matching the app's
# routes: FastAPI's route internals differ across versions. tests/server/test_body_limits.py checks this
# against the OpenAPI schema (the operations taking application/octet-stream).
UPLOADS = (
    ("POST", re.compile(r"^/api/models/[^/]+/versions/?$")),
    ("POST", re.compile(r"^/api/packages/?$")),
)

# JSON routes allowed more than max_json_bytes: (method, path, limit). Bulk provisioning takes up to
# 10,000 devices of up to ~2.6 kB each (64-char id and group, 100-char name, 32 tags of 64 characters).
LARGE_JSON = (("POST", re.compile(r"^/api/devices/bulk/?$"), 10_000 * 2_600),)


def is_upload(method: str, path: str) -> bool:
    return any(method == m and pattern.match(path) for m, pattern in UPLOADS)


def json_limit(method: str, path: str, default: int) -> int:
    return next(
        (max(n, default) for m, pattern, n in LARGE_JSON if method == m and pattern.match(path)), default
    )


def token_matches(authorization: bytes | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, the scheme case-insensitive (as fastapi's HTTPBearer)."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(credentials.strip(), token.encode())


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the streamed body passes the limit; an HTTPException so that FastAPI's
    body parsing lets it through to the app's handler (which answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large(limit))


def too_large(limit: int) -> str:
    return f"request body above the limit of {limit} bytes"


async def _send_error(
    send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    # The body was (possibly) not read: tell the client this connection ends with the answer.
    raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ApiGuard:
    """`settings` gives the current Settings on each request (tests change them on a running app).
    `authorize(scope, authorization header)` answers (status, detail) to refuse an /api request, None to
    let it through (api/roles.py's RoleGate); without it, only TINYFLEET_API_TOKEN is accepted."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Callable[[], Any],
        authorize: Callable[[Scope, bytes | None], Awaitable[tuple[int, str] | None]] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.settings()
        headers = dict(scope["headers"])  # the last of repeated headers; ASGI names are lower-case
        path: str = scope["path"]
        if path == "/api" or path.startswith("/api/"):
            authorization = headers.get(b"authorization")
            if self.authorize is not None:
                refused = await self.authorize(scope, authorization)
            else:
                refused = None if token_matches(authorization, settings.api_token) else (401, UNAUTHORIZED)
            if refused is not None:
                challenge = [(b"www-authenticate", b"Bearer")] if refused[0] == 401 else []
                await _send_error(send, refused[0], refused[1], challenge)
                return
        method = scope["method"]
        limit = (
            settings.max_upload_bytes
            if is_upload(method, path)
            else json_limit(method, path, settings.max_json_bytes)
        )
        declared = headers.get(b"content-length")
        if declared is not None:
            text = declared.strip()
            # more digits than any limit has: too large, without converting a huge number
            if text.isdigit() and (len(text) > 18 or int(text) > limit):
                await _send_error(send, 413, too_large(limit))
                return
        await self._bounded(scope, receive, send, limit)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            # Only reached when something read the body outside FastAPI's handlers (which answer 413).
            if started:
                raise
            await _send_error(send, 413, str(exc.detail))
