"""Telemetry reports carry a per-device boot and sequence number (PROTOCOL 4.5) so that a report
delivered twice (redelivery after a server restart or reconnect) is stored once.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("telemetry") as batch:
        batch.add_column(sa.Column("boot", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.create_unique_constraint("uq_telemetry_device_boot_seq", ["device_id", "boot", "seq"])


def downgrade() -> None:
    with op.batch_alter_table("telemetry") as batch:
        batch.drop_constraint("uq_telemetry_device_boot_seq", type_="unique")
        batch.drop_column("seq")
        batch.drop_column("boot")
