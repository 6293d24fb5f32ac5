"""Telemetry rolled up per minute and model digest (services/rollups.py), filled from the stored reports.

Revision ID: 0006
Revises: 0005
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "telemetry_rollups",
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("reports", sa.BigInteger(), nullable=False),
        sa.Column("inference_count", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_us_sum", sa.Float(), nullable=False),
        sa.Column("confidence_sum", sa.Float(), nullable=False),
        sa.Column("latency_estimated", sa.Boolean(), nullable=False),
        sa.Column("class_histogram", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "model_sha256"),
    )
    _backfill()


def _backfill() -> None:
    """Roll up the reports stored before this revision (in Python: histograms are JSON lists)."""
    conn = op.get_bind()
    telemetry = sa.table(
        "telemetry",
        sa.column("id", sa.Integer),
        sa.column("ts", sa.Float),
        sa.column("model_sha256", sa.String),
        sa.column("inference_count", sa.BigInteger),
        sa.column("errors", sa.BigInteger),
        sa.column("latency_us_mean", sa.Float),
        sa.column("confidence_mean", sa.Float),
        sa.column("latency_estimated", sa.Boolean),
        sa.column("class_histogram", sa.JSON),
    )
    sums: dict[tuple[int, str], dict[str, Any]] = {}
    last_id = -1
    while True:
        rows = conn.execute(
            sa.select(telemetry).where(telemetry.c.id > last_id).order_by(telemetry.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        for r in rows:
            key = (int(r.ts // 60) * 60, r.model_sha256)
            s = sums.setdefault(
                key, {"reports": 0, "n": 0, "err": 0, "lat": 0.0, "conf": 0.0, "est": False, "h": []}
            )
            s["reports"] += 1
            s["n"] += r.inference_count
            s["err"] += r.errors
            s["lat"] += r.latency_us_mean * r.inference_count
            s["conf"] += r.confidence_mean * r.inference_count
            s["est"] = s["est"] or bool(r.latency_estimated)
            hist = r.class_histogram or []
            s["h"] += [0] * (len(hist) - len(s["h"]))
            for i, v in enumerate(hist):
                s["h"][i] += v
    if sums:
        rollups = sa.table(
            "telemetry_rollups",
            *(sa.column(c) for c in ("minute", "model_sha256", "reports", "inference_count", "errors")),
            *(sa.column(c) for c in ("latency_us_sum", "confidence_sum", "latency_estimated")),
            sa.column("class_histogram", sa.JSON),
        )
        op.bulk_insert(
            rollups,
            [
                {
                    "minute": minute,
                    "model_sha256": sha,
                    "reports": s["reports"],
                    "inference_count": s["n"],
                    "errors": s["err"],
                    "latency_us_sum": s["lat"],
                    "confidence_sum": s["conf"],
                    "latency_estimated": s["est"],
                    "class_histogram": s["h"],
                }
                for (minute, sha), s in sums.items()
            ],
        )


def downgrade() -> None:
    op.drop_table("telemetry_rollups")
