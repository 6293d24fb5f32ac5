"""Migration 0006 rolls up the telemetry stored before it, so version series cover history from the start."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlmodel import select

from tinyfleet.server.db import MIGRATIONS_DIR, make_engine, session_scope
from tinyfleet.server.models import TelemetryRollup


def _upgrade(engine: sa.Engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_upgrade_rolls_up_stored_reports(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    _upgrade(engine, "0005")
    telemetry = sa.table(
        "telemetry",
        *(sa.column(c) for c in ("device_id", "ts", "received_at", "model_sha256", "inference_count")),
        *(sa.column(c) for c in ("latency_us_mean", "latency_estimated", "confidence_mean", "errors")),
        sa.column("arena_bytes"),
        sa.column("class_histogram", sa.JSON),
    )
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO devices (id, name, hardware_class, tags, mqtt_password_hash, online, created_at)"
                " VALUES ('dev0', '', 1, '[]', 'x', false, 0)"
            )
        )
        rows = [
            (120.0, "a", 10, [4, 6]),
            (150.0, "a", 30, [30]),
            (179.9, "b", 5, []),
            (180.0, "a", 2, [1, 1]),
        ]
        for ts, sha, n, hist in rows:
            conn.execute(
                telemetry.insert().values(
                    device_id="dev0",
                    ts=ts,
                    received_at=ts,
                    model_sha256=sha * 64,
                    inference_count=n,
                    latency_us_mean=100.0 * n,
                    latency_estimated=sha == "b",
                    confidence_mean=0.5,
                    errors=1,
                    arena_bytes=0,
                    class_histogram=hist,
                )
            )
    _upgrade(engine, "0006")
    with session_scope(engine) as s:
        order = (TelemetryRollup.minute, TelemetryRollup.model_sha256)
        got = [
            (r.minute, r.model_sha256[0], r.reports, r.inference_count, r.errors, r.latency_us_sum, *rest)
            for r in s.exec(select(TelemetryRollup).order_by(*order))
            for rest in [(r.confidence_sum, r.latency_estimated, r.class_histogram)]
        ]
    assert got == [
        (120, "a", 2, 40, 2, 100.0 * (10 * 10 + 30 * 30), 20.0, False, [34, 6]),
        (120, "b", 1, 5, 1, 100.0 * 25, 2.5, True, []),
        (180, "a", 1, 2, 1, 400.0, 1.0, False, [1, 1]),
    ]
    engine.dispose()
