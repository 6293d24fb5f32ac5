"""The boots a device's presence moved away from, with the last seq applied for each, so that a will of
an earlier boot handled after the new boot's `online` is dropped (issue 16, PROTOCOL.md 4.6 "Presence
order", across boots).

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("presence_retired", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("presence_retired")
