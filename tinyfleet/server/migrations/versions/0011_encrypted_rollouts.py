"""Encrypted rollouts (issue 18): devices' X25519 public keys, rollouts marked encrypted, the encrypted
copy of each package or payload variant (with its content key), and the content key wrapped per device.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("encryption_public_key", sa.String(length=64), nullable=True))
    with op.batch_alter_table("rollouts") as batch:
        batch.add_column(sa.Column("encrypted", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "encrypted_packages",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("source_id", sa.String(length=40), nullable=False),
        sa.Column("hardware_class", sa.BigInteger(), nullable=False),
        sa.Column("payload_encoding", sa.Integer(), nullable=False),
        sa.Column("content_key", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("source_id", name="uq_encrypted_packages_source"),
    )
    op.create_table(
        "key_wraps",
        sa.Column(
            "encrypted_package_id",
            sa.String(length=40),
            sa.ForeignKey("encrypted_packages.id"),
            primary_key=True,
        ),
        sa.Column("device_id", sa.String(length=64), primary_key=True),
        sa.Column("wrap", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("key_wraps")
    op.drop_table("encrypted_packages")
    with op.batch_alter_table("rollouts") as batch:
        batch.drop_column("encrypted")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("encryption_public_key")
