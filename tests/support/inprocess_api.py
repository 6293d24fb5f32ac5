"""The control-plane app driven in-process: an httpx.Client whose requests go straight to the ASGI app
(no socket, no lifespan), and a small wrapper that asserts on status codes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.from_thread
import httpx


class SyncASGITransport(httpx.BaseTransport):
    """httpx.Client -> ASGI app in this process (no socket, no lifespan)."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._portal_cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._portal_cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            req = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            resp = await self._inner.handle_async_request(req)
            data = await resp.aread()
            return resp.status_code, resp.headers.raw, data

        status, headers, data = self._portal.call(call)
        return httpx.Response(status, headers=headers, content=data, request=request)

    def close(self) -> None:
        self._portal_cm.__exit__(None, None, None)


@dataclass
class Api:
    client: httpx.Client
    ctx: Any  # tinyfleet.server.context.AppContext

    def ok(self, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        resp = self.client.request(method, url, **kwargs)
        assert resp.status_code == status, f"{method} {url}: {resp.status_code} {resp.text}"
        return (
            resp.json()
            if resp.content and resp.headers.get("content-type", "").startswith("application/json")
            else resp
        )
