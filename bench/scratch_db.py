"""A throw-away PostgreSQL database for one benchmark run (shared by the benchmarks that take --postgres)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def scratch_database(server: str | None) -> Iterator[str | None]:
    """A new empty PostgreSQL database on `server` for one run, dropped after (None: SQLite)."""
    if server is None:
        yield None
        return
    from sqlalchemy import create_engine, text

    name = f"tinyfleet_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{server.rstrip('/')}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
