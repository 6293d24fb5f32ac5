"""Fixtures of the control-plane tests: databases (SQLite file per test, PostgreSQL schema per test),
the app driven in-process, and real Mosquitto brokers (tinyfleet.server.devbroker)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.inprocess_api import Api, SyncASGITransport
from tests.support.rollout_fleet import Fleet, new_fleet
from tinyfleet.server.devbroker import BrokerError, DevBroker, find_mosquitto

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname={db}"


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
        with psycopg.connect(PG_DSN.format(db="test"), autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 (user postgres, db test) is not reachable: {exc}")
    yield name
    with psycopg.connect(PG_DSN.format(db="test"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A SQLAlchemy URL whose search_path is a schema of its own for this test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = PG_DSN.format(db=pg_database)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_database}?options=-csearch_path%3D{schema}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database at the migrations' head, made once: tests copy it instead of migrating."""
    from tinyfleet.server.db import make_engine, upgrade_to_head

    path = tmp_path_factory.mktemp("template") / "tinyfleet.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database at the migrations' head (SQLite: a copy of one migrated once; PostgreSQL: a fresh
    schema that the app migrates)."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("migrated_sqlite")
        shutil.copyfile(template, tmp_path / "tinyfleet.db")
        return f"sqlite:///{tmp_path / 'tinyfleet.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables at all, for tests of the migrations themselves."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tinyfleet.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


# --- the control plane in-process -------------------------------------------------------------------


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


# --- Mosquitto --------------------------------------------------------------------------------------


@pytest.fixture
def dev_broker(tmp_path: Path) -> Iterator[Callable[..., DevBroker]]:
    """Start DevBrokers with any options (config and log under tmp_path/broker-N); all stopped at the
    end of the test. Skipped when mosquitto is not installed."""
    try:
        find_mosquitto()
    except BrokerError as exc:
        pytest.skip(str(exc))
    started: list[DevBroker] = []

    def start(**options: Any) -> DevBroker:
        options.setdefault("workdir", tmp_path / f"broker-{len(started)}")
        broker = DevBroker(**options)
        started.append(broker)
        return broker.start()

    yield start
    for broker in reversed(started):
        broker.stop()


@pytest.fixture
def mosquitto(dev_broker: Callable[..., DevBroker]) -> DevBroker:
    """A Mosquitto broker on a free port (anonymous access), stopped at the end of the test."""
    return dev_broker()


# --- the scripted fleet of the rollout tests -----------------------------------------------------------


@pytest.fixture
def fleet(api: Api, shared_models: Path) -> Fleet:
    """v1 and v2 of a shared model on the in-process API, scripted devices added by the test."""
    return new_fleet(api)
