"""Database engine and sessions. Services never commit: the caller (a request, a tick, a gateway
message) owns the transaction through `session_scope`.

What a change must do outside the database (wake the rollout driver, publish a desired state, rewrite
the broker's password file) waits for the commit: services register it with `after_commit(session, fn)`
and `session_scope` runs it once the commit succeeded, never after a rollback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
AFTER_COMMIT = "tinyfleet.after_commit"

log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # Several threads (API, gateway worker, rollout driver) share the file; WAL lets readers run
        # while one writer holds the lock, and the busy timeout makes writers wait instead of failing.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # BEGIN is emitted below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # WAL + NORMAL: a commit survives a crash of the process; only a power cut may lose the last
            # transactions (never corrupts). SQLite is the development store; production uses PostgreSQL.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        # A deferred transaction that reads and then writes fails at once (SQLITE_BUSY_SNAPSHOT) when
        # another thread committed in between; taking the write lock up front makes it wait instead.
        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def after_commit(session: Session, effect: Callable[[], object]) -> None:
    """Run `effect` once this session's transaction has committed (registered twice, run once)."""
    pending: list[Callable[[], object]] = session.info.setdefault(AFTER_COMMIT, [])
    if effect not in pending:
        pending.append(effect)


def _run_after_commit(session: Session) -> None:
    # The data is committed whatever an effect does: a failing one is logged, never raised, so that a
    # request that changed the database still answers with its success.
    for effect in session.info.pop(AFTER_COMMIT, []):
        try:
            effect()
        except Exception:
            log.exception("after-commit effect %r failed", effect)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception; then the after-commit effects
    (only when the commit succeeded)."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.info.pop(AFTER_COMMIT, None)
            session.rollback()
            raise
        _run_after_commit(session)


def upgrade_to_head(engine: Engine) -> None:
    """Run the Alembic migrations up to head on this engine's database."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas starting together migrate one after the other (the lock ends with the transaction).
            conn.execute(text("SELECT pg_advisory_xact_lock(29766, 0)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
