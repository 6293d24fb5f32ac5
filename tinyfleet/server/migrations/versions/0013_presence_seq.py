"""The (boot, seq) of the presence message a device's `online` comes from, so that replicas handling one
device's presence messages out of order keep the newer (issue 16, PROTOCOL.md 4.6 "Presence order").

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("presence_boot", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("presence_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("presence_seq")
        batch.drop_column("presence_boot")
