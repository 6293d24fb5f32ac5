"""Request and response bodies of the REST API (Create / Update / Public)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from tinyfleet.server.config import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from tinyfleet.server.services.ids import DEVICE_ID_PATTERN, SERVICE_PREFIX, check_device_id

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$"
# Canonical MAJOR.MINOR.PATCH as the manifest encodes it: each part 0..65535 without leading zeros, so
# that the version accepted is the version signed ('01.0.0' would be signed as '1.0.0').
_U16 = r"(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_U8 = r"(0|[1-9][0-9]?|1[0-9]{2}|2[0-4][0-9]|25[0-5])"
SEMVER_PATTERN = rf"^{_U16}\.{_U16}\.{_U16}$"
# A runtime version packs into u32 major<<16 | minor<<8 | patch: minor and patch are 0..255.
RUNTIME_VERSION_PATTERN = rf"^{_U16}\.{_U8}\.{_U8}$"
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


def _pattern_check(pattern: str, what: str) -> Callable[[str], str]:
    import re

    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):  # not match(): '$' also matches before a final newline
            raise ValueError(f"{value[:40]!r} is not a canonical {what}")
        return value

    return check


# Query parameter types: a clear one-line error instead of pydantic's "should match pattern <regex>",
# and the pattern still in the OpenAPI schema (clients and schemathesis generate from it).
SemVer = Annotated[
    str,
    AfterValidator(_pattern_check(SEMVER_PATTERN, "version MAJOR.MINOR.PATCH (0..65535, no leading zeros)")),
    WithJsonSchema({"type": "string", "pattern": SEMVER_PATTERN}),
]
RuntimeVersion = Annotated[
    str,
    AfterValidator(
        _pattern_check(
            RUNTIME_VERSION_PATTERN,
            "runtime version MAJOR.MINOR.PATCH (0..65535.0..255.0..255, no leading zeros)",
        )
    ),
    WithJsonSchema({"type": "string", "pattern": RUNTIME_VERSION_PATTERN}),
]


# --- hardware classes -------------------------------------------------------------------------------


class HardwareClassPut(Strict):
    name: str = Field(min_length=1, max_length=64)
    chunk_size: int = Field(ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)
    # Optional device limits, checked at upload (422 naming the limit); unset: not checked.
    slot_size: int | None = Field(default=None, ge=1, le=0xFFFFFFFF, description="bytes per flash slot")
    ram_budget: int | None = Field(default=None, ge=1, le=0xFFFFFFFF, description="largest tensor arena")
    model_ram: int | None = Field(
        default=None,
        ge=1,
        le=0xFFFFFFFF,
        description="RAM an encrypted model is decrypted into to run: the largest encrypted rollout's model",
    )


class HardwareClassPublic(BaseModel):
    id: int
    name: str
    chunk_size: int
    slot_size: int | None = None
    ram_budget: int | None = None
    model_ram: int | None = None


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
        default=None,
        pattern=DEVICE_ID_PATTERN,
        description=f"chosen by the server when omitted; never starting with {SERVICE_PREFIX!r} (reserved)",
    )
    name: str = Field(default="", max_length=100)
    hardware_class: int = Field(ge=0, le=0xFFFFFFFF)
    group: str | None = Field(default=None, pattern=LABEL_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=32)
    csr: str | None = Field(
        default=None,
        max_length=16384,
        description="cert mode: a PEM certificate signing request (EC P-256, CN = the device id); the"
        " certificate is issued for its key and no private key is returned",
    )

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str | None) -> str | None:
        return value if value is None else check_device_id(value)  # the server's own MQTT accounts

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
    capabilities: dict[str, Any] | None = None  # reported by the device (PROTOCOL 4.2); None: unknown
    encryption_public_key: str | None = None  # X25519, hex; None: no key (encrypted rollouts refuse it)
    created_at: float


class MqttCredentials(BaseModel):
    host: str | None
    port: int | None
    tls: bool
    username: str
    password: str | None  # None in cert mode: the certificate is the credential
    topic_prefix: str


class DeviceCertificate(BaseModel):
    """A device's X.509 client certificate (CN = its id) from the fleet CA, with the CA certificate that
    also signs the broker's. private_key_pem is shown once (None when the device sent a CSR)."""

    serial: str
    not_after: float
    certificate_pem: str
    private_key_pem: str | None
    ca_pem: str


class CertificateRequest(Strict):
    csr: str | None = Field(default=None, max_length=16384, description="PEM CSR; omitted: a new key")


class CertificateRevoked(BaseModel):
    device_id: str
    revoked_serials: list[str]


class EncryptionKeyIssued(BaseModel):
    """A device's new X25519 key pair: the private key shown once, the public key the server keeps."""

    device_id: str
    encryption_key: str  # base64 of the 32-byte private key
    encryption_public_key: str  # hex


class TrustedKeyPublic(BaseModel):
    key_id: str
    public_key: str


class ProvisionResult(BaseModel):
    device: DevicePublic
    mqtt: MqttCredentials
    trust_store: list[TrustedKeyPublic]
    chunk_size: int
    certificate: DeviceCertificate | None = None  # cert mode (TINYFLEET_DEVICE_AUTH=cert)
    # The device's X25519 private key (base64) for encrypted rollouts, shown once at provisioning (the
    # server keeps the public key); None when rotating credentials (PROTOCOL 4.6).
    encryption_key: str | None = None


# Devices per POST /api/devices/bulk: one transaction holds them all (and the answer, ~100 bytes each).
MAX_BULK_DEVICES = 10_000
BULK_PREFIX_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,57}$"  # room for "-NNNNN" within 64 characters


class DeviceBulkCreate(Strict):
    """Either `count` devices named `{prefix}-{start:05d}`.. (random ids without a prefix) sharing one
    hardware class and labels, or an explicit list of `devices`."""

    count: int | None = Field(default=None, ge=1, le=MAX_BULK_DEVICES)
    prefix: str | None = Field(default=None, pattern=BULK_PREFIX_PATTERN)
    start: int = Field(default=0, ge=0, le=99_999_999)
    hardware_class: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)
    group: str | None = Field(default=None, pattern=LABEL_PATTERN)
    tags: list[str] = Field(default_factory=list, max_length=32)
    devices: list[DeviceCreate] | None = Field(default=None, min_length=1, max_length=MAX_BULK_DEVICES)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        return _check_labels(tags)

    @model_validator(mode="after")
    def _one_form(self) -> DeviceBulkCreate:
        if (self.count is None) == (self.devices is None):
            raise ValueError("give either count (with hardware_class) or devices, not both")
        if self.devices is not None:
            if self.prefix is not None or self.hardware_class is not None or self.group or self.tags:
                raise ValueError("prefix, hardware_class, group and tags go with count, not with devices")
            ids = [d.id for d in self.devices if d.id is not None]
            if len(ids) != len(set(ids)):
                dup = sorted(_dups(ids))
                raise ValueError(f"device ids repeated in the request: {', '.join(dup[:10])}")
            return self
        if self.hardware_class is None:
            raise ValueError("count needs hardware_class")
        if self.prefix is not None:
            last = f"{self.prefix}-{self.start + (self.count or 0) - 1:05d}"
            check_device_id(self.prefix + "-00000")  # the reserved prefix, with a one-line reason
            if len(last) > 64:
                raise ValueError(f"device id {last!r} would be longer than 64 characters")
        return self

    def device_list(self) -> list[DeviceCreate]:
        """The devices this request creates, ids None where the server chooses them."""
        if self.devices is not None:
            return self.devices
        count, hw = self.count or 0, self.hardware_class or 0
        ids = [None if self.prefix is None else f"{self.prefix}-{self.start + i:05d}" for i in range(count)]
        # model_construct: the fields were validated above, once for the whole request
        return [
            DeviceCreate.model_construct(id=i, name="", hardware_class=hw, group=self.group, tags=self.tags)
            for i in ids
        ]


def _dups(ids: list[str]) -> set[str]:
    seen: set[str] = set()
    dups: set[str] = set()
    for i in ids:
        (dups if i in seen else seen).add(i)
    return dups


class BulkMqtt(BaseModel):
    """The broker, the same for every device; each device's username is its id, its topics tf/{id}/."""

    host: str | None
    port: int | None
    tls: bool


class BulkDeviceCredentials(BaseModel):
    id: str
    hardware_class: int
    password: str | None  # None in cert mode
    chunk_size: int
    certificate_pem: str | None = None
    private_key_pem: str | None = None
    encryption_key: str | None = None  # X25519 private key (base64), shown once (PROTOCOL 4.6)


class BulkProvisionResult(BaseModel):
    count: int
    mqtt: BulkMqtt
    trust_store: list[TrustedKeyPublic]
    devices: list[BulkDeviceCredentials]
    ca_pem: str | None = None  # cert mode: the fleet CA, for every device


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


class CanaryConfig(Strict):
    """The canary gate of a rollout (README "Canary gates"). After a wave (not the last) reaches its
    success threshold, its devices on the new model (canary) are compared with devices on the model they
    ran before (control) over the same window; the next wave starts only if every metric passes.
    `{}` takes every default."""

    # 5 min: ~30 reports per device at the simulator's 10 s interval; long enough for slow drifts to show.
    window_seconds: float = Field(default=300.0, ge=1, le=7 * 86400)
    # Per side and metric. 1000 inferences resolve a one-point error-rate rise from a 1 % baseline only
    # roughly; raise it for rare errors. One device: a first wave is often a single canary.
    min_inferences: int = Field(default=1000, ge=1, le=10**12)
    min_devices: int = Field(default=1, ge=1, le=100000)
    # Fail when the canary's error rate is above control + max_increase with one-sided p < alpha.
    error_rate_max_increase: float = Field(default=0.01, ge=0, le=1)
    error_rate_alpha: float = Field(default=0.05, gt=0, lt=1)
    latency_max_increase: float = Field(default=0.10, ge=0, le=100, description="relative: 0.1 = 10 % slower")
    confidence_max_drop: float = Field(
        default=0.05, ge=0, le=1, description="absolute, mean top-1 confidence"
    )
    class_jsd_max: float = Field(default=0.05, ge=0, le=1, description="Jensen-Shannon divergence, base 2")
    # Still not enough data this long after the window closed: `hold` pauses the rollout for the operator
    # (resume accepts the wave), `pass` lets the wave through. Hold: no data is no evidence of health.
    max_wait_seconds: float = Field(default=3600.0, ge=0, le=30 * 86400)
    on_not_enough_data: Literal["hold", "pass"] = "hold"
    on_fail: Literal["pause", "rollback"] = "pause"


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
    # Leave out the devices that would refuse the package (reported in `skipped_devices`) instead of 409.
    skip_incompatible: bool = False
    canary: CanaryConfig | None = None
    # Send encrypted packages, the content key wrapped per device (PROTOCOL 6); devices without an
    # encryption key are refused like incompatible ones (skip_incompatible leaves them out).
    encrypted: bool = False

    @model_validator(mode="after")
    def _canary_needs_waves(self) -> RolloutCreate:
        if self.canary is not None and len(self.waves) < 2:
            raise ValueError("a canary gate holds back the next wave: give at least two waves")
        return self


class RolloutCommand(Strict):
    """Optional body of POST /rollouts/{id}/start."""

    skip_incompatible: bool = False


class IncompatibleDevice(BaseModel):
    device_id: str
    error_code: int
    error: str  # the error code's name, e.g. TOO_LARGE
    reason: str


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


class GateMetric(BaseModel):
    verdict: Literal["pass", "fail", "not_enough_data"]
    canary: float | None  # error rate, latency (us), confidence; JSD for class_distribution
    control: float | None  # None for class_distribution (its canary value is the divergence of the two)
    threshold: float
    canary_samples: int  # inferences (classified ones for confidence and class_distribution)
    control_samples: int
    canary_devices: int
    control_devices: int
    p_value: float | None = None  # error_rate only
    change: float | None = None  # latency: relative change; confidence: absolute change


class GatePublic(BaseModel):
    wave: int  # 0-based, like current_wave
    # pending (window open), not_enough_data (holding), pass, fail, accepted (resumed by the operator)
    verdict: str
    reason: str
    window_start: float
    window_end: float
    evaluated_at: float | None
    metrics: dict[str, GateMetric]


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
    # Devices left out because they would refuse the package (asked with skip_incompatible); None: never.
    skipped_devices: list[IncompatibleDevice] | None = None
    canary: dict[str, Any] | None = None  # the gate configuration (CanaryConfig), None: no gate
    gates: list[GatePublic] = []  # one per gated wave, oldest first
    encrypted: bool = False  # packages sent encrypted, content keys wrapped per device


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
