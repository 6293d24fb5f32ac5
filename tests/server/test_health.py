"""Probes that do not lie: /healthz (liveness), /readyz (database, migrations, MQTT gateway), and
`tinyfleet server status` exiting 1 with one line when the server is not ready."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import create_engine
from typer.testing import CliRunner

from tinyfleet.cli import app
from tinyfleet.server.devbroker import DevBroker
from tinyfleet.server.stack import run_stack

UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:9/nowhere?connect_timeout=2"


def status(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["server", "status", *args])
    return result.exit_code, result.stdout, result.stderr


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_ready_without_broker_and_probes_need_no_token(api) -> None:
    for path in ("/healthz", "/readyz"):
        resp = api.client.get(path, headers={"Authorization": ""})
        assert resp.status_code == 200, resp.text
    body = api.client.get("/readyz").json()
    assert body["ready"] is True and body["failing"] == []
    assert {name: c["ok"] for name, c in body["checks"].items()} == {
        "database": True,
        "migrations": True,
        "mqtt": True,
    }


def test_not_ready_when_migrations_are_not_at_head(api) -> None:
    with api.ctx.db.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'somewhere_else'"))
    resp = api.client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["failing"] == ["migrations"] and "somewhere_else" in body["detail"]
    assert api.client.get("/healthz").status_code == 200  # alive all the same


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_ready_with_broker_then_not_when_the_broker_is_down(
    tmp_path, monkeypatch, dev_broker: Callable[..., DevBroker]
) -> None:
    broker = dev_broker()
    with run_stack(broker.url, data_dir=tmp_path / "server") as st:
        monkeypatch.setenv("TINYFLEET_API_URL", st.url)
        monkeypatch.setenv("TINYFLEET_API_TOKEN", st.token)
        with st.client() as c:
            _wait_for(lambda: c.get("/readyz").status_code == 200)
            assert c.get("/readyz").json()["checks"]["mqtt"]["detail"] == "gateway connected"

            code, out, _err = status()
            assert code == 0 and "mqtt" in out
            code, out, _err = status("--json")
            answer: dict[str, Any] = json.loads(out)
            assert code == 0 and answer["readyz"]["ready"] is True and answer["gateway"]["connected"]

            broker.stop()
            _wait_for(lambda: c.get("/readyz").status_code == 503)
            body = c.get("/readyz").json()
            assert body["failing"] == ["mqtt"] and body["ready"] is False
            assert c.get("/healthz").status_code == 200

        code, out, err = status()
        assert code == 1 and out == ""
        assert _lines(err) == ["error: server not ready: mqtt: gateway not connected to the broker"], err


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_not_ready_when_the_database_is_unreachable(tmp_path, monkeypatch) -> None:
    pytest.importorskip("psycopg")
    with run_stack(data_dir=tmp_path / "server", background=False) as st:
        monkeypatch.setenv("TINYFLEET_API_URL", st.url)
        monkeypatch.setenv("TINYFLEET_API_TOKEN", st.token)
        good = st.ctx.db
        bad = create_engine(UNREACHABLE_DB)
        st.ctx.db = bad  # the database "goes away" under the running server
        try:
            with st.client() as c:
                resp = c.get("/readyz")
                assert resp.status_code == 503
                body = resp.json()
                assert body["failing"] == ["database", "migrations"]
                assert body["checks"]["database"]["detail"].startswith("unreachable")
                assert c.get("/healthz").status_code == 200
            code, out, err = status()
            assert code == 1 and out == ""
            lines = _lines(err)
            assert len(lines) == 1 and lines[0].startswith("error: server not ready: database: unreachable")
        finally:
            st.ctx.db = good
            bad.dispose()
