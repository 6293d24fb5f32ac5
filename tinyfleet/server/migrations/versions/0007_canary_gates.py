"""Canary gates: a rollout's gate configuration and, per gated wave, the verdicts and the numbers
behind them (tinyfleet/server/canary).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("canary", sa.JSON(), nullable=True))
    op.create_table(
        "canary_gates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rollout_id", sa.Integer(), sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("window_start", sa.Float(), nullable=False),
        sa.Column("window_end", sa.Float(), nullable=False),
        sa.Column("evaluated_at", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("rollout_id", "wave", name="uq_canary_gates_rollout_wave"),
    )
    op.create_index("ix_canary_gates_rollout_id", "canary_gates", ["rollout_id"])


def downgrade() -> None:
    op.drop_index("ix_canary_gates_rollout_id", table_name="canary_gates")
    op.drop_table("canary_gates")
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("canary")
