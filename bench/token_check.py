"""Cost of identifying the caller on every API request (the check ApiGuard makes before any body is read)
and of the audit row written after each mutating call. SQLite, the app driven in-process.

- `cached()`: a user token found in TokenResolver's cache (SHA-256 + dict lookup), no I/O;
- `resolve()` on a miss: the database lookup (and the last_used_at update) a token costs once per
  cache period;
- GET /api/me round trips with the bootstrap token and with a user's token (cached);
- PATCH /api/devices/{id} round trips (audited) against the same with the audit row not written.

    PYTHONPATH=. .venv/bin/python bench/token_check.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.inprocess_api import SyncASGITransport
from tinyfleet.server.api import audit
from tinyfleet.server.app import create_app
from tinyfleet.server.config import Settings
from tinyfleet.server.context import AppContext


def per_call_us(runs: int, fn: Callable[[], object]) -> tuple[float, float]:
    """(median, p95) in microseconds."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e6)
    out.sort()
    return statistics.median(out), out[int(len(out) * 0.95)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'b.db'}", data_dir=Path(tmp) / "data")
        ctx = AppContext(settings)
        app = create_app(ctx=ctx, background=False)
        boot = {"Authorization": f"Bearer {settings.api_token}"}
        with httpx.Client(transport=SyncASGITransport(app), base_url="http://b", headers=boot) as c:
            c.post("/api/users", json={"name": "otto", "role": "operator"}).raise_for_status()
            token = c.post("/api/tokens", json={"name": "b", "user": "otto"}).json()["token"]
            c.post("/api/devices", json={"id": "dev-b", "hardware_class": 1}).raise_for_status()
            resolver = app.state.tokens
            rows = [
                ("cached() of a user token", per_call_us(runs, lambda: resolver.cached(token))),
                ("resolve() on a cache miss (database)", per_call_us(runs // 10, _miss(resolver, token))),
            ]
            user = {"Authorization": f"Bearer {token}"}
            rows.append(("GET /api/me, bootstrap token", per_call_us(runs, lambda: c.get("/api/me"))))
            rows.append(
                ("GET /api/me, user token", per_call_us(runs, lambda: c.get("/api/me", headers=user)))
            )
            url, body = "/api/devices/dev-b", {"name": "bench"}
            patch = lambda: c.patch(url, json=body, headers=user)  # noqa: E731
            rows.append(("PATCH /api/devices/{id}, audited", per_call_us(runs // 4, patch)))
            write = audit.AuditLog._write
            audit.AuditLog._write = lambda self, entry: None  # type: ignore[method-assign]
            try:
                rows.append(("PATCH /api/devices/{id}, no audit row", per_call_us(runs // 4, patch)))
            finally:
                audit.AuditLog._write = write  # type: ignore[method-assign]
        ctx.db.dispose()
    print("| operation | median µs | p95 µs |\n|---|---|---|")
    for name, (median, p95) in rows:
        print(f"| {name} | {median:.1f} | {p95:.1f} |")


def _miss(resolver: object, token: str) -> Callable[[], object]:
    def run() -> object:
        resolver._cache.clear()  # type: ignore[attr-defined]
        return resolver.resolve(token)  # type: ignore[attr-defined]

    return run


if __name__ == "__main__":
    main()
