"""Server-signed sequences rise per signing key across all models (the device compares a package's
sequence with its active package's, whatever the model): one counter row per key, seeded with the
highest sequence already stored.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_sequences",
        sa.Column("key_id", sa.String(length=16), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
    )
    # Every key starts above every package stored so far (of any key and model): the next package the
    # server signs is accepted over whatever a device runs from this server.
    op.execute(
        "INSERT INTO signing_sequences (key_id, last_sequence)"
        " SELECT key_id, (SELECT MAX(sequence) FROM packages) FROM packages"
        " WHERE signed_by = 'server' GROUP BY key_id"
    )


def downgrade() -> None:
    op.drop_table("signing_sequences")
