"""Initial schema: hardware classes, models, versions, packages, devices, rollouts, actions, telemetry.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _s(length: int) -> sa.String:
    return sa.String(length=length)


def upgrade() -> None:
    op.create_table(
        "hardware_classes",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("name", _s(64), nullable=False),
        sa.Column("chunk_size", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", _s(31), nullable=False, unique=True),
        sa.Column("description", _s(500), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", _s(20), nullable=False),
        sa.Column("notes", _s(500), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    )
    op.create_index("ix_model_versions_model_id", "model_versions", ["model_id"])
    op.create_table(
        "packages",
        sa.Column("id", _s(40), primary_key=True),
        sa.Column("model_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("hardware_class", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", _s(64), nullable=False),
        sa.Column("model_sha256", _s(64), nullable=False),
        sa.Column("model_size", sa.Integer(), nullable=False),
        sa.Column("payload_encoding", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("security_counter", sa.BigInteger(), nullable=False),
        sa.Column("min_runtime_version", sa.BigInteger(), nullable=False),
        sa.Column("arena_bytes", sa.BigInteger(), nullable=False),
        sa.Column("key_id", _s(16), nullable=False),
        sa.Column("signed_by", _s(16), nullable=False),
        sa.Column("rebuilt_from", _s(40), sa.ForeignKey("packages.id"), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint(
            "model_version_id", "hardware_class", "sequence", name="uq_packages_version_hw_seq"
        ),
    )
    op.create_index("ix_packages_model_version_id", "packages", ["model_version_id"])
    op.create_index("ix_packages_model_sha256", "packages", ["model_sha256"])
    op.create_table(
        "package_blobs",
        sa.Column("package_id", _s(40), sa.ForeignKey("packages.id"), primary_key=True),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("id", _s(64), primary_key=True),
        sa.Column("name", _s(100), nullable=False),
        sa.Column("hardware_class", sa.BigInteger(), nullable=False),
        sa.Column("group", _s(64), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("mqtt_password_hash", _s(200), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=True),
        sa.Column("reported", sa.JSON(), nullable=True),
        sa.Column("reported_at", sa.Float(), nullable=True),
        sa.Column("runtime_version", sa.BigInteger(), nullable=True),
        sa.Column("active_model_sha256", _s(64), nullable=True),
        sa.Column("desired", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_devices_hardware_class", "devices", ["hardware_class"])
    op.create_index("ix_devices_group", "devices", ["group"])
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", _s(100), nullable=False),
        sa.Column("model_version_id", sa.Integer(), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("waves", sa.JSON(), nullable=False),
        sa.Column("success_threshold_percent", sa.Float(), nullable=False),
        sa.Column("soak_seconds", sa.Float(), nullable=False),
        sa.Column("failure_threshold", sa.JSON(), nullable=False),
        sa.Column("failure_action", _s(16), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("action_timeout_seconds", sa.Float(), nullable=False),
        sa.Column("state", _s(16), nullable=False),
        sa.Column("state_reason", _s(500), nullable=False),
        sa.Column("current_wave", sa.Integer(), nullable=False),
        sa.Column("wave_sizes", sa.JSON(), nullable=False),
        sa.Column("wave_passed_at", sa.Float(), nullable=True),
        sa.Column("failure_baseline", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_rollouts_model_version_id", "rollouts", ["model_version_id"])
    op.create_index("ix_rollouts_state", "rollouts", ["state"])
    op.create_table(
        "device_actions",
        sa.Column("id", _s(40), primary_key=True),
        sa.Column("rollout_id", sa.Integer(), sa.ForeignKey("rollouts.id"), nullable=False),
        sa.Column("device_id", _s(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("purpose", _s(16), nullable=False),
        sa.Column("operation", _s(16), nullable=False),
        sa.Column("package_id", _s(40), sa.ForeignKey("packages.id"), nullable=True),
        sa.Column("target_model_sha256", _s(64), nullable=True),
        sa.Column("wave", sa.Integer(), nullable=False),
        sa.Column("state", _s(16), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=False),
        sa.Column("error", _s(500), nullable=False),
        sa.Column("bytes_received", sa.Integer(), nullable=False),
        sa.Column("previous_model_sha256", _s(64), nullable=True),
        sa.Column("previous_package_id", _s(40), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("notified_at", sa.Float(), nullable=True),
    )
    op.create_index("ix_device_actions_rollout_id", "device_actions", ["rollout_id"])
    op.create_index("ix_device_actions_device_id", "device_actions", ["device_id"])
    op.create_index("ix_device_actions_state", "device_actions", ["state"])
    op.create_table(
        "telemetry",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("device_id", _s(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("model_sha256", _s(64), nullable=False),
        sa.Column("inference_count", sa.BigInteger(), nullable=False),
        sa.Column("latency_us_mean", sa.Float(), nullable=False),
        sa.Column("latency_estimated", sa.Boolean(), nullable=False),
        sa.Column("class_histogram", sa.JSON(), nullable=False),
        sa.Column("confidence_mean", sa.Float(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("arena_bytes", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_telemetry_device_id", "telemetry", ["device_id"])
    op.create_index("ix_telemetry_ts", "telemetry", ["ts"])
    op.create_index("ix_telemetry_model_sha256", "telemetry", ["model_sha256"])


def downgrade() -> None:
    for table in (
        "telemetry",
        "device_actions",
        "rollouts",
        "devices",
        "package_blobs",
        "packages",
        "model_versions",
        "models",
        "hardware_classes",
    ):
        op.drop_table(table)
