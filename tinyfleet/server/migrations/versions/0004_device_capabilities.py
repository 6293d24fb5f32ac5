"""Device capabilities (from the reported state), optional slot / RAM limits per hardware class, and the
devices a rollout left out because they would refuse its package.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("capabilities", sa.JSON(), nullable=True))
    with op.batch_alter_table("hardware_classes") as batch:
        batch.add_column(sa.Column("slot_size", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("ram_budget", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("skipped_devices", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("skipped_devices")
    with op.batch_alter_table("hardware_classes") as batch:
        batch.drop_column("ram_budget")
        batch.drop_column("slot_size")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("capabilities")
