"""Alerts: drift alarms about model versions in production (tinyfleet/server/services/drift.py).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("model_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("opened_at", sa.Float(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("numbers", sa.JSON(), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
    )
    op.create_index("ix_alerts_model_version_id", "alerts", ["model_version_id"])
    op.create_index("ix_alerts_state", "alerts", ["state"])


def downgrade() -> None:
    op.drop_index("ix_alerts_state", table_name="alerts")
    op.drop_index("ix_alerts_model_version_id", table_name="alerts")
    op.drop_table("alerts")
