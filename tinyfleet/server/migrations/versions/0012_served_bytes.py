"""Chunk bytes served per (device, package) move from one process's memory to the database, so that any
replica can total what all replicas served (issue 16, services/served.py).

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served_bytes",
        sa.Column("device_id", sa.String(length=64), primary_key=True),
        sa.Column("package_id", sa.String(length=40), primary_key=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("served_bytes")
