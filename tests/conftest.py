"""Shared fixtures: databases (SQLite file per test, PostgreSQL schema per test), a Mosquitto broker
on a free port, and the control-plane app driven in-process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import pytest

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


# --- databases --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; skipped when the server is unreachable."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed")
    name = f"tinyfleet_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True, connect_timeout=3
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (user postgres, db test) is not reachable: {exc}")
    yield name
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a schema of its own for this test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={pg_database}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_database}?options=-csearch_path%3D{schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tinyfleet.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


# --- Mosquitto --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Broker:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    config: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def reload(self) -> None:
        """SIGHUP: mosquitto rereads its password and ACL files."""
        self.process.send_signal(1)


def start_mosquitto(folder: Path, extra_config: str = "") -> Broker:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    config = folder / "mosquitto.conf"
    # As root, mosquitto would switch to the "mosquitto" user, which cannot read pytest's tmp dirs.
    user = "user root\n" if os.geteuid() == 0 else ""
    config.write_text(
        f"listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\nlog_type error\n{user}"
        + (extra_config or "allow_anonymous true\n")
    )
    log = open(folder / "mosquitto.log", "wb")  # noqa: SIM115 (closed when the process ends)
    proc = subprocess.Popen([exe, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise RuntimeError(
                    f"mosquitto did not start: {(folder / 'mosquitto.log').read_text()}"
                ) from None
            time.sleep(0.02)
    return Broker("127.0.0.1", port, proc, config)


def stop_mosquitto(broker: Broker) -> None:
    broker.process.terminate()
    try:
        broker.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        broker.process.kill()
        broker.process.wait()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto broker on a free port (anonymous access), killed at the end of the test."""
    folder = tmp_path / "broker"
    folder.mkdir()
    broker = start_mosquitto(folder)
    yield broker
    stop_mosquitto(broker)


# --- the control plane in-process -------------------------------------------------------------------


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
    ctx: Any  # server.context.AppContext

    def ok(self, method: str, url: str, status: int = 200, **kwargs: Any) -> Any:
        resp = self.client.request(method, url, **kwargs)
        assert resp.status_code == status, f"{method} {url}: {resp.status_code} {resp.text}"
        return (
            resp.json()
            if resp.content and resp.headers.get("content-type", "").startswith("application/json")
            else resp
        )


@pytest.fixture
def api(db_url: str, tmp_path: Path) -> Iterator[Api]:
    """The app on a fresh database, without broker or background threads (tests tick the engine)."""
    from tinyfleet.server.app import create_app
    from tinyfleet.server.config import Settings
    from tinyfleet.server.context import AppContext

    settings = Settings(database_url=db_url, data_dir=tmp_path / "data").validate()
    ctx = AppContext(settings)
    app = create_app(ctx=ctx, background=False)
    transport = SyncASGITransport(app)
    client = httpx.Client(
        transport=transport,
        base_url="http://tinyfleet.test",
        headers={"Authorization": f"Bearer {settings.api_token}"},
    )
    yield Api(client, ctx)
    client.close()
    ctx.db.dispose()
