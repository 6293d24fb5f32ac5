"""A hardware class may declare its model RAM: the largest model encrypted at rest its devices can
decrypt and run (PROTOCOL 6.6); the server refuses an encrypted rollout of a bigger model to the class
(issue 18).

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hardware_classes") as batch:
        batch.add_column(sa.Column("model_ram", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hardware_classes") as batch:
        batch.drop_column("model_ram")
