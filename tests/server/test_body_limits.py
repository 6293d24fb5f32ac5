"""The token is checked before any body byte is read; every body has a size limit (413 above it, from
Content-Length or while streaming); uploads still work, streamed or not."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from tests.support.inprocess_api import SyncASGITransport
from tinyfleet.server.app import create_app
from tinyfleet.server.config import DEFAULT_MAX_JSON_BYTES
from tinyfleet.server.stack import run_stack

MIB = 1024 * 1024
CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def tflite(shared_models: Path) -> bytes:
    return (shared_models / "hello_world_int8.tflite").read_bytes()


class Body:
    """A streamed request body of `total` bytes (no Content-Length) that counts what was pulled."""

    def __init__(self, total: int, data: bytes = b"x" * CHUNK) -> None:
        self.total, self.data, self.consumed = total, data, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.consumed < self.total:
            part = self.data[: self.total - self.consumed]
            self.consumed += len(part)
            yield part


def _send(app, method: str, url: str, body: Body, headers: dict[str, str]) -> httpx.Response:
    """One request straight to the ASGI app: the body is pulled only as the app receives it."""

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.request(method, url, content=body, headers=headers)

    return anyio.run(go)


@pytest.fixture
def app(api):
    return create_app(ctx=api.ctx, background=False)


def _anonymous(api) -> httpx.Client:
    """The api fixture's app without the token."""
    return httpx.Client(
        transport=SyncASGITransport(create_app(ctx=api.ctx, background=False)), base_url="http://t"
    )


def _auth(api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.ctx.settings.api_token}"}


def test_no_token_is_401_without_reading_the_body(app):
    routes = [
        ("POST", "/api/models"),
        ("POST", "/api/rollouts"),
        ("POST", "/api/packages"),
        ("GET", "/api/x"),
    ]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        for method, url in routes:
            body = Body(64 * MIB)
            resp = _send(app, method, url, body, headers)
            assert resp.status_code == 401 and "API token" in resp.json()["detail"]
            assert resp.headers["www-authenticate"] == "Bearer"
            assert body.consumed == 0, (headers, url)


def test_no_token_with_malformed_json_is_401_not_422(api):
    client = _anonymous(api)
    for content in (b"{not json", b"[" * 100000, b"\xff\xfe"):
        resp = client.post("/api/models", content=content, headers={"Content-Type": "application/json"})
        assert resp.status_code == 401, resp.text
    # huge declared length, nothing sent: the answer comes from the headers
    resp = client.post("/api/devices", content=b"", headers={"Content-Length": "9" * 40})
    assert resp.status_code == 401


def test_public_routes_need_no_token(api):
    client = _anonymous(api)
    for path in ("/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/"):
        assert client.get(path).status_code in (200, 503), path


def test_json_body_above_the_limit_is_413(api, app):
    big = b'{"name": "x", "description": "' + b"d" * DEFAULT_MAX_JSON_BYTES + b'"}'
    resp = api.client.post("/api/models", content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and "limit" in resp.json()["detail"]
    body = Body(64 * MIB, b"[" * CHUNK)  # no Content-Length: refused while streaming
    resp = _send(app, "POST", "/api/models", body, {**_auth(api), "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["detail"].startswith("request body above")
    assert body.consumed <= DEFAULT_MAX_JSON_BYTES + CHUNK
    # and a declared Content-Length above the limit is refused before reading
    body = Body(2 * MIB)
    resp = _send(app, "POST", "/api/models", body, {**_auth(api), "Content-Length": str(2 * MIB)})
    assert resp.status_code == 413 and body.consumed == 0
    resp = _send(app, "POST", "/api/models", Body(0), {**_auth(api), "Content-Length": "9" * 5000})
    assert resp.status_code == 413
    # bodies the routes do not expect are bounded too
    resp = api.client.request("GET", "/api/models", content=b"x" * (DEFAULT_MAX_JSON_BYTES + 1))
    assert resp.status_code == 413


def test_upload_above_the_limit_is_413_with_and_without_content_length(api, app):
    api.ctx.settings = api.ctx.settings.with_overrides(max_upload_bytes=4 * MIB)
    model = api.ok("POST", "/api/models", 201, json={"name": "big"})
    url = f"/api/models/{model['id']}/versions?version=1.0.0&hardware_class=1"
    for route in (url, "/api/packages"):
        resp = api.client.post(route, content=b"x" * (4 * MIB + 1))
        assert resp.status_code == 413 and "4194304 bytes" in resp.json()["detail"], route
        body = Body(64 * MIB)
        resp = _send(app, "POST", route, body, _auth(api))
        assert resp.status_code == 413, route
        assert body.consumed <= 4 * MIB + CHUNK
        # within the upload limit but above the JSON limit: reaches the route (which refuses the bytes)
        resp = api.client.post(route, content=b"x" * (2 * MIB))
        assert resp.status_code == 422, resp.text


def test_streamed_upload_without_content_length_works(api, app, tflite):
    model = api.ok("POST", "/api/models", 201, json={"name": "streamed"})
    url = f"/api/models/{model['id']}/versions?version=1.0.0&hardware_class=1"
    resp = _send(app, "POST", url, Body(len(tflite), tflite), _auth(api))
    assert resp.status_code == 201, resp.text
    pid = resp.json()["packages"][0]["id"]
    package = api.client.get(f"/api/packages/{pid}/download").content
    api.ctx.settings = api.ctx.settings.with_overrides(max_upload_bytes=len(package))
    resp = api.client.post("/api/packages", content=package)  # exactly at the limit
    assert resp.status_code == 409 and "already" in resp.json()["detail"]


def _first_answer(host: str, port: int, head: bytes) -> bytes:
    """Send request headers (and the start of a body) on a raw socket; the server's first bytes."""
    with socket.create_connection((host, port), timeout=20) as sock:
        sock.sendall(head)
        return sock.recv(4096)


def test_real_server_answers_from_the_headers(tmp_path):
    """A real uvicorn server: 1 GiB declared without a token -> 401, 2 MiB declared with one -> 413,
    both with nothing of the body sent (a client writing the body could race the server's close)."""
    with run_stack(data_dir=tmp_path, background=False) as stack:
        declared = b"POST /api/models HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        answer = _first_answer(stack.host, stack.port, declared + b"Content-Length: 1073741824\r\n\r\n{x")
        assert answer.startswith(b"HTTP/1.1 401 "), answer
        auth = f"Authorization: Bearer {stack.token}\r\n".encode()
        answer = _first_answer(stack.host, stack.port, declared + auth + b"Content-Length: 2097152\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        with stack.client() as client:  # and the token still works
            assert client.post("/api/models", json={"name": "ok"}).status_code == 201


def test_upload_routes_are_the_octet_stream_operations(api):
    from tinyfleet.server.api.limits import is_upload

    spec = api.ok("GET", "/openapi.json")
    for path, item in spec["paths"].items():
        concrete = path.replace("{", "").replace("}", "")
        for method, op in item.items():
            takes_bytes = "application/octet-stream" in op.get("requestBody", {}).get("content", {})
            assert is_upload(method.upper(), concrete) == takes_bytes, (method, path)
