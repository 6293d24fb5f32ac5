"""Migration 0003 seeds the signing counter from the packages already stored, so the first package the
server signs after the upgrade is above every sequence any device may run."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from tinyfleet.server.db import MIGRATIONS_DIR, make_engine, session_scope
from tinyfleet.server.services.packages import next_sequence


def _upgrade(engine, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def test_upgrade_seeds_the_counter_above_stored_sequences(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    _upgrade(engine, "0002")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO models (id, name, description, created_at) VALUES (1, 'a', '', 0)"))
        conn.execute(text("INSERT INTO models (id, name, description, created_at) VALUES (2, 'b', '', 0)"))
        for vid, model in ((1, 1), (2, 2)):
            conn.execute(
                text(
                    "INSERT INTO model_versions (id, model_id, version, notes, created_at)"
                    " VALUES (:id, :m, '1.0.0', '', 0)"
                ),
                {"id": vid, "m": model},
            )
        # per-model sequences as the server used to give them, plus an offline package
        for pid, vid, seq, key, by in (
            ("pkg-1", 1, 1, "aaaa", "server"),
            ("pkg-2", 2, 1, "aaaa", "server"),
            ("pkg-3", 1, 7, "bbbb", "offline"),
        ):
            conn.execute(
                text(
                    "INSERT INTO packages (id, model_version_id, hardware_class, size, sha256, model_sha256,"
                    " model_size, payload_encoding, sequence, security_counter, min_runtime_version,"
                    " arena_bytes, key_id, signed_by, created_at)"
                    " VALUES (:id, :v, :hw, 1, '', '', 1, 0, :seq, 0, 0, 0, :key, :by, 0)"
                ),
                {"id": pid, "v": vid, "hw": seq, "seq": seq, "key": key, "by": by},
            )
    _upgrade(engine, "head")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT key_id, last_sequence FROM signing_sequences")).all()
    assert [tuple(r) for r in rows] == [("aaaa", 7)]
    with session_scope(engine) as s:
        assert next_sequence(s, "aaaa") == 8
        assert next_sequence(s, "cccc") == 9  # a new key (rotation) starts above everything given
        assert next_sequence(s, "aaaa") == 10
    engine.dispose()
