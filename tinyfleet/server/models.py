"""Database tables (SQLModel). Times are Unix seconds (float) so that SQLite and PostgreSQL agree.

The schema itself is created by the Alembic migrations in server/migrations; a test compares the two.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


class HardwareClass(SQLModel, table=True):
    __tablename__ = "hardware_classes"

    id: int = Field(primary_key=True, sa_type=BigInteger)  # the manifest's hardware_class value (u32)
    name: str = Field(max_length=64)
    chunk_size: int  # largest chunk the gateway sends to devices of this class
    # Optional limits of the class's devices, checked at upload (None: not known, not checked).
    slot_size: int | None = Field(default=None, sa_type=BigInteger)  # bytes per flash slot
    ram_budget: int | None = Field(default=None, sa_type=BigInteger)  # largest tensor arena
    # RAM a model encrypted at rest is decrypted into to run (PROTOCOL 6.6): the largest encrypted model.
    model_ram: int | None = Field(default=None, sa_type=BigInteger)
    created_at: float


class Model(SQLModel, table=True):
    __tablename__ = "models"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=31, unique=True)
    description: str = Field(default="", max_length=500)
    created_at: float


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),)

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="models.id", index=True)
    version: str = Field(max_length=20)  # "major.minor.patch"
    notes: str = Field(default="", max_length=500)
    created_at: float


class Package(SQLModel, table=True):
    """A signed package (manifest || payload) for one hardware class of one model version.

    A version has one original package per hardware class; `rebuilt_from` marks a re-signed copy of an
    older package with a fresh sequence number, made for a rollback (a device refuses to install a
    sequence not above its active package's, of any model). Server-signed sequences come from
    `SigningSequence`."""

    __tablename__ = "packages"
    __table_args__ = (
        UniqueConstraint("model_version_id", "hardware_class", "sequence", name="uq_packages_version_hw_seq"),
    )

    id: str = Field(primary_key=True, max_length=40)
    model_version_id: int = Field(foreign_key="model_versions.id", index=True)
    hardware_class: int = Field(sa_type=BigInteger)
    size: int
    sha256: str = Field(max_length=64)  # of the whole package file
    model_sha256: str = Field(max_length=64, index=True)
    model_size: int
    payload_encoding: int
    sequence: int = Field(sa_type=BigInteger)
    security_counter: int = Field(sa_type=BigInteger)
    min_runtime_version: int = Field(sa_type=BigInteger)
    arena_bytes: int = Field(sa_type=BigInteger)
    key_id: str = Field(max_length=16)
    signed_by: str = Field(max_length=16)  # "server" or "offline"
    rebuilt_from: str | None = Field(default=None, foreign_key="packages.id", max_length=40)
    created_at: float


class SigningSequence(SQLModel, table=True):
    """The last manifest sequence the server gave a package it signed with key `key_id`, whatever the model.

    A device refuses a package whose sequence is not above its ACTIVE package's, whatever that package's
    model name, so the server's sequences rise across all models (services/packages.py, next_sequence).
    The row is updated in the signing transaction: concurrent uploads queue on its row lock."""

    __tablename__ = "signing_sequences"

    key_id: str = Field(primary_key=True, max_length=16)
    last_sequence: int = Field(sa_type=BigInteger)


class PackageBlob(SQLModel, table=True):
    """The package bytes, apart from the metadata so that listings never load them."""

    __tablename__ = "package_blobs"

    package_id: str = Field(primary_key=True, foreign_key="packages.id", max_length=40)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class PackageVariant(SQLModel, table=True):
    """The same model as a server-signed package, re-signed with a smaller payload: compressed
    (`base_sha256` "") or a delta against the model whose digest is `base_sha256`. Built once per
    (package, base) and shared by every device on that base. `status` is "ready" (bytes in `data`) or
    "failed" (`error` says why; devices then get the raw package)."""

    __tablename__ = "package_variants"
    __table_args__ = (
        UniqueConstraint("source_package_id", "base_sha256", name="uq_package_variants_source_base"),
    )

    id: str = Field(primary_key=True, max_length=40)  # sent as package_id in desired states and chunks
    source_package_id: str = Field(foreign_key="packages.id", index=True, max_length=40)
    base_sha256: str = Field(max_length=64)
    payload_encoding: int
    status: str = Field(max_length=16)
    error: str = Field(default="", max_length=500)
    size: int
    sha256: str = Field(max_length=64)
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: float


class Device(SQLModel, table=True):
    __tablename__ = "devices"

    id: str = Field(primary_key=True, max_length=64)  # also the MQTT username
    name: str = Field(default="", max_length=100)
    hardware_class: int = Field(index=True, sa_type=BigInteger)
    group: str | None = Field(default=None, max_length=64, index=True)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    mqtt_password_hash: str = Field(max_length=200)  # mosquitto_passwd "$7$" format
    online: bool = False
    last_seen: float | None = None
    reported: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    reported_at: float | None = None
    runtime_version: int | None = Field(default=None, sa_type=BigInteger)
    active_model_sha256: str | None = Field(default=None, max_length=64)
    desired: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # What the device can install and run, from its reported state (services/devices.py CAPABILITIES);
    # None until a device reports them (older devices never do: nothing is predicted for them).
    capabilities: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # X25519 public key (hex) for content-key wraps (services/encryption.py); the private key was shown
    # once at provisioning. None: provisioned before device keys existed (refused by encrypted rollouts).
    encryption_public_key: str | None = Field(default=None, max_length=64)
    # The (boot, seq) of the presence message `online` comes from (PROTOCOL 4.6 "Presence order"): an older
    # one handled late by another replica is dropped. None: the device sends presence without them.
    presence_boot: int | None = Field(default=None, sa_type=BigInteger)
    presence_seq: int | None = Field(default=None, sa_type=BigInteger)
    # [[boot, seq], ...], newest first: boots whose presence was applied and then replaced by another
    # boot's (PROTOCOL 4.6), with the last seq applied; a late will of such a boot is dropped.
    presence_retired: list[list[int]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: float


class Rollout(SQLModel, table=True):
    __tablename__ = "rollouts"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    model_version_id: int = Field(foreign_key="model_versions.id", index=True)
    selector: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    waves: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    success_threshold_percent: float
    soak_seconds: float
    failure_threshold: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    failure_action: str = Field(max_length=16)  # "pause" | "rollback"
    max_concurrent: int
    action_timeout_seconds: float
    # draft, running, paused, completed, aborted, rolling_back, rolled_back
    state: str = Field(max_length=16, index=True)
    state_reason: str = Field(default="", max_length=500)
    current_wave: int = 0
    wave_sizes: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    wave_passed_at: float | None = None  # when the current wave reached its success threshold
    failure_baseline: int = 0  # failures the operator acknowledged by resuming; the threshold counts on top
    # Devices left out because they would refuse the package ({device_id, error_code, error}), when asked
    # with skip_incompatible; None for a rollout that never skipped any.
    skipped_devices: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The canary gate configuration (schemas.CanaryConfig, every field present); None: no gate.
    canary: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Packages go encrypted, their content key wrapped per device (services/encryption.py).
    encrypted: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None


class DeviceAction(SQLModel, table=True):
    """One device's step in a rollout: a deploy (install) or, later, its rollback (revert or install)."""

    __tablename__ = "device_actions"

    id: str = Field(primary_key=True, max_length=40)  # the action_id sent to the device
    rollout_id: int = Field(foreign_key="rollouts.id", index=True)
    device_id: str = Field(foreign_key="devices.id", index=True, max_length=64)
    purpose: str = Field(max_length=16)  # "deploy" | "rollback"
    operation: str = Field(max_length=16)  # "install" | "revert"
    package_id: str | None = Field(default=None, foreign_key="packages.id", max_length=40)
    target_model_sha256: str | None = Field(default=None, max_length=64)
    wave: int = 0
    # queued, notified, downloading, verifying, trial, confirmed, failed, rolled_back, timed_out, and for a
    # rollback action only: skipped (nothing to return to: the device ran no model before the rollout)
    state: str = Field(max_length=16, index=True)
    error_code: int = 0
    error: str = Field(default="", max_length=500)
    bytes_received: int = 0
    # What the device ran before this rollout touched it (for rollback).
    previous_model_sha256: str | None = Field(default=None, max_length=64)
    previous_package_id: str | None = Field(default=None, max_length=40)
    # What was actually sent (tinyfleet/server/services/variants.py): the package or one of its variants, its
    # encoding and size, the raw package's size for comparison, and the chunk bytes served so far
    # (plus those of a refused delta attempt before the fallback to raw).
    sent_package_id: str | None = Field(default=None, max_length=40)
    payload_encoding: int | None = None
    sent_size: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    raw_size: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    bytes_sent: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    fallback_bytes: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    fallback_reason: str = Field(default="", max_length=200, sa_column_kwargs={"server_default": ""})
    created_at: float
    updated_at: float
    notified_at: float | None = None


class TelemetryReport(SQLModel, table=True):
    __tablename__ = "telemetry"
    __table_args__ = (UniqueConstraint("device_id", "boot", "seq", name="uq_telemetry_device_boot_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(foreign_key="devices.id", index=True, max_length=64)
    ts: float = Field(index=True)
    received_at: float
    model_sha256: str = Field(max_length=64, index=True)
    inference_count: int = Field(sa_type=BigInteger)
    latency_us_mean: float
    latency_estimated: bool
    class_histogram: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    confidence_mean: float
    errors: int = Field(sa_type=BigInteger)
    arena_bytes: int = Field(sa_type=BigInteger)
    # Per-device report sequence (PROTOCOL 4.5): a redelivered report is stored once. Null for devices
    # that send no seq (NULLs never collide in the unique index).
    boot: int | None = Field(default=None, sa_type=BigInteger)
    seq: int | None = Field(default=None, sa_type=BigInteger)


class TelemetryRollup(SQLModel, table=True):
    """Telemetry summed per minute and model digest (services/rollups.py), maintained in the transaction
    that stores the raw reports, so it counts exactly what was stored (duplicates never reach it). Keyed
    by digest, not version: a version's series is a range scan over its packages' digests; per-device
    series come from the raw rows. Means are kept as inference-weighted sums so that rows add up."""

    __tablename__ = "telemetry_rollups"

    minute: int = Field(primary_key=True, sa_type=BigInteger)  # Unix seconds, a multiple of 60
    model_sha256: str = Field(primary_key=True, max_length=64)
    reports: int = Field(sa_type=BigInteger)
    inference_count: int = Field(sa_type=BigInteger)
    errors: int = Field(sa_type=BigInteger)
    latency_us_sum: float  # sum of latency_us_mean * inference_count
    confidence_sum: float  # sum of confidence_mean * inference_count
    latency_estimated: bool
    class_histogram: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class CanaryGate(SQLModel, table=True):
    """The canary gate of one wave of a rollout (tinyfleet/server/canary): its window, verdict and the
    numbers behind each metric's verdict, updated on each evaluation until decided."""

    __tablename__ = "canary_gates"
    __table_args__ = (UniqueConstraint("rollout_id", "wave", name="uq_canary_gates_rollout_wave"),)

    id: int | None = Field(default=None, primary_key=True)
    rollout_id: int = Field(foreign_key="rollouts.id", index=True)
    wave: int
    # pending, not_enough_data, pass, fail, accepted (the operator resumed past a fail or a hold)
    verdict: str = Field(max_length=16)
    reason: str = Field(default="", max_length=500)
    window_start: float
    window_end: float  # grows while the gate waits for data
    evaluated_at: float | None = None
    # metric name -> {verdict, canary, control, threshold, canary_samples, ...} (canary/stats.py)
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float


class Alert(SQLModel, table=True):
    """An alarm about a model version in production (services/drift.py): one open alert per (kind,
    version) at most; a re-firing check updates `last_seen_at` and `numbers`, a check back within the
    thresholds resolves it."""

    __tablename__ = "alerts"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)  # "class_drift" | "confidence_drop"
    model_version_id: int = Field(foreign_key="model_versions.id", index=True)
    state: str = Field(max_length=16, index=True)  # "open" | "resolved"
    opened_at: float
    last_seen_at: float
    resolved_at: float | None = None
    # the check's figures: baseline and recent windows, their values and the threshold
    numbers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    message: str = Field(default="", max_length=500)


class User(SQLModel, table=True):
    """Someone who calls the API (server/services/users.py); `role` is viewer, operator or admin
    (server/api/roles.py). Users are disabled, never deleted: the audit log keeps naming them."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("name", name="uq_users_name"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    role: str = Field(max_length=16)
    created_at: float
    disabled: bool = False


class ApiToken(SQLModel, table=True):
    """A user's bearer token: only its SHA-256 is stored (tokens are 32 random bytes, so a fast hash is
    enough), with a short prefix that lets people tell their tokens apart."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    name: str = Field(max_length=64)
    token_hash: str = Field(max_length=64)  # sha256 hex
    prefix: str = Field(max_length=16)
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


class AuditEntry(SQLModel, table=True):
    """One mutating API call (server/api/audit.py), refused ones included: who, what, and the answer."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: float = Field(index=True)
    actor: str = Field(max_length=64, index=True)  # a user name, 'bootstrap', or '-' (unknown token)
    method: str = Field(max_length=8)
    path: str = Field(max_length=500)
    target: str | None = Field(default=None, max_length=200)  # the id named in the path, if any
    status_code: int
    detail: str = Field(default="", max_length=500)  # the error's one line, or "" on success


class DeviceCert(SQLModel, table=True):
    """A client certificate the fleet CA issued to a device (services/fleet_ca.py); never its key. Not a
    foreign key to devices: a deleted device's revoked serials must stay in the CRL."""

    __tablename__ = "device_certs"
    __table_args__ = (UniqueConstraint("serial", name="uq_device_certs_serial"),)

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(max_length=64, index=True)
    serial: str = Field(max_length=40)  # lower-case hex
    issued_at: float
    not_after: float
    revoked_at: float | None = Field(default=None, index=True)


class EncryptedPackage(SQLModel, table=True):
    """The encrypted copy of a package or payload variant (`source_id`) for encrypted rollouts: the same
    manifest fields with flags bit 0 set, re-signed, the payload XOR ChaCha20(content_key) (PROTOCOL 6).
    Made once per source and shared by every device; its id is what devices fetch chunks of. The content
    key stays here so that wraps can be made for devices that join later (docs/SECURITY.md)."""

    __tablename__ = "encrypted_packages"
    __table_args__ = (UniqueConstraint("source_id", name="uq_encrypted_packages_source"),)

    id: str = Field(primary_key=True, max_length=40)
    source_id: str = Field(max_length=40)  # a packages.id or a package_variants.id
    hardware_class: int = Field(sa_type=BigInteger)
    payload_encoding: int
    content_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    size: int
    sha256: str = Field(max_length=64)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: float


class KeyWrap(SQLModel, table=True):
    """An encrypted package's content key wrapped for one device (80 bytes, PROTOCOL 6), made at send
    time and kept: a restart, a resend or another replica gives the device the same wrap."""

    __tablename__ = "key_wraps"

    encrypted_package_id: str = Field(primary_key=True, foreign_key="encrypted_packages.id", max_length=40)
    device_id: str = Field(primary_key=True, max_length=64)
    wrap: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: float


class ServedCount(SQLModel, table=True):
    """Chunk bytes served to a device for one package, summed over every replica (services/served.py)."""

    __tablename__ = "served_bytes"

    device_id: str = Field(primary_key=True, max_length=64)
    package_id: str = Field(primary_key=True, max_length=40)
    bytes: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
