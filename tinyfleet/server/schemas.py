"""Request and response bodies of the REST API (Create / Update / Public)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tinyfleet.server.config import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$"
SEMVER_PATTERN = r"^\d{1,5}\.\d{1,5}\.\d{1,5}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:=/-]{0,63}$"

ActionState = Literal[
    "queued",
    "notified",
    "downloading",
    "verifying",
    "trial",
    "confirmed",
    "failed",
    "rolled_back",
    "timed_out",
    "skipped",  # rollback action only: the device ran no model before the rollout (no_previous_model)
]
RolloutState = Literal["draft", "running", "paused", "completed", "aborted", "rolling_back", "rolled_back"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold NUL; refuse it the same way on every database.
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and "\x00" in v for v in items):
            raise ValueError("text must not contain NUL characters")
        return value


# --- hardware classes -------------------------------------------------------------------------------


class HardwareClassPut(Strict):
    name: str = Field(min_length=1, max_length=64)
    chunk_size: int = Field(ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)


class HardwareClassPublic(BaseModel):
    id: int
    name: str
    chunk_size: int


# --- models and versions ----------------------------------------------------------------------------


class ModelCreate(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="1..31 characters, the manifest's model_name")
    description: str = Field(default="", max_length=500)


class ModelUpdate(Strict):
    description: str = Field(max_length=500)


class ModelPublic(BaseModel):
    id: int
    name: str
    description: str
    created_at: float
    versions: list[str] = []


class PackagePublic(BaseModel):
    id: str
    model_version_id: int
    model_name: str
    version: str
    hardware_class: int
    size: int
    sha256: str
    model_sha256: str
    model_size: int
    payload_encoding: int
    sequence: int
    security_counter: int
    min_runtime_version: int
    arena_bytes: int
    key_id: str
    signed_by: str
    rebuilt_from: str | None = None
    created_at: float


class ModelVersionPublic(BaseModel):
    id: int
    model_id: int
    model_name: str
    version: str
    notes: str
    created_at: float
    packages: list[PackagePublic] = []


# --- devices ----------------------------------------------------------------------------------------


class DeviceCreate(Strict):
    id: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9_-]{2,63}$", description="chosen by the server when omitted"
    )
    name: str = Field(default="", max_length=100)
    hardware_class: int = Field(ge=0, le=0xFFFFFFFF)
    group: str | None = Field(default=None, pattern=LABEL_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=32)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        return _check_labels(tags)


class DeviceUpdate(Strict):
    name: str | None = Field(default=None, max_length=100)
    group: str | None = Field(default=None, pattern=LABEL_PATTERN)
    tags: list[str] | None = Field(default=None, max_length=32)
    clear_group: bool = False

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str] | None) -> list[str] | None:
        return None if tags is None else _check_labels(tags)


def _check_labels(tags: list[str]) -> list[str]:
    import re

    for tag in tags:
        if not re.match(LABEL_PATTERN, tag):
            raise ValueError(f"tag {tag!r} must be 1..64 characters of letters, digits and _.:=/-")
    return sorted(set(tags))


class DevicePublic(BaseModel):
    id: str
    name: str
    hardware_class: int
    group: str | None
    tags: list[str]
    online: bool
    last_seen: float | None
    runtime_version: int | None
    active_model_sha256: str | None
    reported: dict[str, Any] | None
    reported_at: float | None
    desired: dict[str, Any] | None
    created_at: float


class MqttCredentials(BaseModel):
    host: str | None
    port: int | None
    tls: bool
    username: str
    password: str
    topic_prefix: str


class TrustedKeyPublic(BaseModel):
    key_id: str
    public_key: str


class ProvisionResult(BaseModel):
    device: DevicePublic
    mqtt: MqttCredentials
    trust_store: list[TrustedKeyPublic]
    chunk_size: int


# --- rollouts ---------------------------------------------------------------------------------------


class Selector(Strict):
    tags: list[str] = Field(default_factory=list, max_length=32, description="a device must carry every tag")
    group: str | None = Field(default=None, max_length=64)
    hardware_class: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)
    device_ids: list[str] = Field(
        default_factory=list, max_length=100000, description="explicit devices (others excluded)"
    )


class Wave(Strict):
    percent: float | None = Field(default=None, gt=0, le=100)
    count: int | None = Field(default=None, ge=1, le=10**9)

    @model_validator(mode="after")
    def _one(self) -> Wave:
        if (self.percent is None) == (self.count is None):
            raise ValueError("a wave gives exactly one of percent or count")
        return self


class FailureThreshold(Strict):
    """`count`: failed devices over the whole rollout. `percent`: failed share of the devices that
    finished, judged once at least floor(100 / percent) + 1 of them (or all) have finished."""

    count: int | None = Field(default=None, ge=1, le=10**9)
    percent: float | None = Field(default=None, gt=0, le=100)

    @model_validator(mode="after")
    def _one(self) -> FailureThreshold:
        if (self.percent is None) == (self.count is None):
            raise ValueError("the failure threshold gives exactly one of count or percent")
        return self


class RolloutCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    model_version_id: int = Field(ge=0, le=2**31 - 1)
    selector: Selector = Field(default_factory=Selector)
    waves: list[Wave] = Field(default_factory=lambda: [Wave(percent=100)], min_length=1, max_length=50)
    success_threshold_percent: float = Field(default=100.0, gt=0, le=100)
    soak_seconds: float = Field(default=0.0, ge=0, le=30 * 86400)
    failure_threshold: FailureThreshold = Field(default_factory=lambda: FailureThreshold(count=1))
    failure_action: Literal["pause", "rollback"] = "pause"
    max_concurrent: int = Field(default=50, ge=1, le=100000)
    action_timeout_seconds: float | None = Field(default=None, gt=0, le=7 * 86400)
    start: bool = False


class RolloutCounts(BaseModel):
    total: int = 0
    by_state: dict[str, int] = {}


class WaveBytes(BaseModel):
    wave: int
    actions: int
    bytes_sent: int
    raw_bytes: int


class RolloutBytes(BaseModel):
    """Chunk bytes served to devices for this rollout's actions (deploy and rollback), next to what the
    raw packages would have cost, and how many actions got each payload encoding."""

    bytes_sent: int = 0
    raw_bytes: int = 0
    encodings: dict[str, int] = {}
    waves: list[WaveBytes] = []


class RolloutPublic(BaseModel):
    id: int
    name: str
    model_version_id: int
    model_name: str
    version: str
    selector: dict[str, Any]
    waves: list[dict[str, Any]]
    wave_sizes: list[int]
    success_threshold_percent: float
    soak_seconds: float
    failure_threshold: dict[str, Any]
    failure_action: str
    max_concurrent: int
    action_timeout_seconds: float
    state: RolloutState
    state_reason: str
    current_wave: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    deploy: RolloutCounts
    rollback: RolloutCounts
    transfer: RolloutBytes = RolloutBytes()
    # For a rollout being or having been rolled back: devices per outcome (reverted, reinstalled,
    # unchanged, no_previous_model, failed, pending; services/rollouts.py rollback_outcomes); else {}.
    rollback_outcome: dict[str, int] = {}


class DeviceActionPublic(BaseModel):
    id: str
    rollout_id: int
    device_id: str
    purpose: str
    operation: str
    package_id: str | None
    target_model_sha256: str | None
    wave: int
    state: ActionState
    error_code: int
    error: str
    bytes_received: int
    sent_package_id: str | None = None
    payload_encoding: int | None = None
    sent_size: int = 0
    raw_size: int = 0
    bytes_sent: int = 0
    fallback_bytes: int = 0
    fallback_reason: str = ""
    previous_model_sha256: str | None
    previous_package_id: str | None
    # A rollback action's result: reverted, reinstalled, no_previous_model, failed or pending; None for
    # a deploy.
    outcome: str | None = None
    created_at: float
    updated_at: float
    notified_at: float | None


# --- telemetry --------------------------------------------------------------------------------------


class TelemetryPublic(BaseModel):
    device_id: str
    ts: float
    model_sha256: str
    inference_count: int
    latency_us_mean: float
    latency_estimated: bool
    class_histogram: list[int]
    confidence_mean: float
    errors: int
    arena_bytes: int


class TelemetrySummary(BaseModel):
    reports: int
    devices: int
    inference_count: int
    errors: int
    latency_us_mean: float | None
    confidence_mean: float | None
    class_histogram: list[int]
    since: float | None
    until: float | None
