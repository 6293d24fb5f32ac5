"""Device certificates issued by the fleet CA (TINYFLEET_DEVICE_AUTH=cert): serial, validity, revocation.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_certs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("issued_at", sa.Float(), nullable=False),
        sa.Column("not_after", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.UniqueConstraint("serial", name="uq_device_certs_serial"),
    )
    op.create_index("ix_device_certs_device_id", "device_certs", ["device_id"])
    op.create_index("ix_device_certs_revoked_at", "device_certs", ["revoked_at"])


def downgrade() -> None:
    op.drop_index("ix_device_certs_revoked_at", table_name="device_certs")
    op.drop_index("ix_device_certs_device_id", table_name="device_certs")
    op.drop_table("device_certs")
