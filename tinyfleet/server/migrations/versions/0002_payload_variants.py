"""Payload variants (compressed / delta re-signings of a package) and per-action bytes sent.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _s(length: int) -> sa.String:
    return sa.String(length=length)


def upgrade() -> None:
    op.create_table(
        "package_variants",
        sa.Column("id", _s(40), primary_key=True),
        sa.Column("source_package_id", _s(40), sa.ForeignKey("packages.id"), nullable=False),
        sa.Column("base_sha256", _s(64), nullable=False),
        sa.Column("payload_encoding", sa.Integer(), nullable=False),
        sa.Column("status", _s(16), nullable=False),
        sa.Column("error", _s(500), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", _s(64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("source_package_id", "base_sha256", name="uq_package_variants_source_base"),
    )
    op.create_index("ix_package_variants_source_package_id", "package_variants", ["source_package_id"])
    with op.batch_alter_table("device_actions") as batch:
        batch.add_column(sa.Column("sent_package_id", _s(40), nullable=True))
        batch.add_column(sa.Column("payload_encoding", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sent_size", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("raw_size", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("bytes_sent", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("fallback_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("fallback_reason", _s(200), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("device_actions") as batch:
        for name in (
            "fallback_reason",
            "fallback_bytes",
            "bytes_sent",
            "raw_size",
            "sent_size",
            "payload_encoding",
            "sent_package_id",
        ):
            batch.drop_column(name)
    op.drop_index("ix_package_variants_source_package_id", table_name="package_variants")
    op.drop_table("package_variants")
