"""Start the whole control plane in-process: the API on a free port (uvicorn in a thread), the MQTT
gateway and the rollout driver. For tests, the simulator and `tinyfleet server run`.

    with run_stack("mqtt://127.0.0.1:1883", data_dir=tmp) as stack:
        client = stack.client()              # httpx.Client with base URL and token
        client.post("/api/models", json={"name": "kws"})
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tinyfleet.server.app import create_app
from tinyfleet.server.config import Settings
from tinyfleet.server.context import AppContext


class Stack:
    """A running control plane. `url`, `token`, `ctx` (settings, database, rollout driver, gateway)."""

    def __init__(
        self, settings: Settings, *, host: str = "127.0.0.1", port: int = 0, background: bool = True
    ):
        self.settings = settings.validate()
        self.ctx = AppContext(self.settings)
        self.app = create_app(ctx=self.ctx, background=background)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.token = self.settings.api_token
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> Stack:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="tinyfleet-api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=20)
            self._thread = None
        self._sock.close()
        self.ctx.db.dispose()

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@contextmanager
def run_stack(
    broker_url: str | None = None,
    *,
    database_url: str | None = None,
    data_dir: str | Path | None = None,
    background: bool = True,
    **overrides: Any,
) -> Iterator[Stack]:
    """Run API + gateway (when `broker_url` is given) + rollout driver until the block ends.

    `database_url` defaults to a SQLite file in `data_dir` (a temporary directory by default); other
    keyword arguments override Settings fields (tick_seconds, action_timeout_seconds, api_token, ...).
    """
    with tempfile.TemporaryDirectory(prefix="tinyfleet-stack-") as tmp:
        folder = Path(data_dir) if data_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            database_url=database_url or f"sqlite:///{folder / 'tinyfleet.db'}",
            data_dir=folder,
            mqtt_url=broker_url,
            **overrides,
        )
        with Stack(settings, background=background) as stack:
            yield stack
