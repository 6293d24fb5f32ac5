"""Settings of the control plane, read from the environment (TINYFLEET_*).

Development mode works out of the box (SQLite file, a generated signing key, a known API token).
Production mode refuses to start with any of those defaults: a forgotten variable must not silently
leave a fleet controllable with a token that is printed in this file.
"""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_API_TOKEN = "tinyfleet-dev-token"
DEFAULT_DATABASE_URL = "sqlite:///./tinyfleet.db"
DEFAULT_CHUNK_SIZE = 1024
MIN_CHUNK_SIZE = 64
MAX_CHUNK_SIZE = 64 * 1024
MODES = ("development", "production")
DEFAULT_MAX_UPLOAD_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_JSON_BYTES = 1024 * 1024
MIN_TOKEN_CHARS = 32
MIN_TOKEN_BITS = 128
LOG_FORMATS = ("text", "json")
DEVICE_AUTHS = ("password", "cert")
DAY = 86400.0


class ConfigError(Exception):
    """The settings cannot be used; the message says which variable to fix."""


@dataclass(frozen=True)
class MqttUrl:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(f"MQTT URL must start with mqtt:// or mqtts://, got {url!r}")
        if not parts.hostname:
            raise ConfigError(f"MQTT URL has no host: {url!r}")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigError(f"MQTT URL has an invalid port: {url!r}") from None
        return cls(parts.hostname, port, parts.username, parts.password, tls)


@dataclass(frozen=True)
class Settings:
    mode: str = "development"
    database_url: str = DEFAULT_DATABASE_URL
    api_token: str = DEFAULT_API_TOKEN
    data_dir: Path = Path("./tinyfleet-data")
    # Server-held Ed25519 key that signs packages built from uploaded .tflite files.
    signing_key_path: Path | None = None
    signing_key_passphrase: str | None = None
    # Extra trusted public keys (offline release keys); the server key is always trusted.
    trusted_key_paths: tuple[Path, ...] = ()
    mqtt_url: str | None = None
    # What provisioned devices are told to connect to (defaults to the gateway's own broker address).
    device_mqtt_url: str | None = None
    mqtt_client_id: str = "tinyfleet-server"
    # This control-plane replica's name (docs/DEPLOY.md "Replicas"): its MQTT client id unless
    # TINYFLEET_MQTT_CLIENT_ID says otherwise, so a replica restarted under the same name resumes its
    # broker session. Replicas subscribe to device topics as members of one shared-subscription group
    # (`$share/<group>/...`, each message to one replica; empty: plain subscriptions), and the leader is
    # re-checked every `leader_check_seconds` (how soon a follower takes over from a dead leader).
    replica_name: str = "tinyfleet-server"
    mqtt_shared_group: str = "tinyfleet"
    leader_check_seconds: float = 1.0
    mqtt_ca_file: Path | None = None
    # Mosquitto password file the server keeps up to date with device credentials (optional).
    mqtt_password_file: Path | None = None
    # Who else may read that file: the broker's group (mode 0640) and/or owner, e.g. Debian's `mosquitto`.
    mqtt_password_file_owner: str | None = None
    mqtt_password_file_group: str | None = None
    # How the broker is told to re-read that file (mosquitto only reads it at start and on SIGHUP):
    # a pid file whose process gets SIGHUP, and/or a command run without a shell.
    mqtt_broker_pid_file: Path | None = None
    mqtt_reload_command: str | None = None
    default_chunk_size: int = DEFAULT_CHUNK_SIZE
    tick_seconds: float = 1.0
    action_timeout_seconds: float = 600.0
    # Telemetry ingest (services/telemetry_ingest.py): messages stored per transaction, how long the writer
    # waits to fill a batch, and its bounded queue (also the in-flight window the gateway asks the broker
    # for: MQTT v5 Receive Maximum).
    telemetry_batch_max: int = 1000
    telemetry_batch_ms: float = 20.0
    telemetry_queue_max: int = 5000
    # Request body limits (413 above): .tflite and package uploads, and every other (JSON) body.
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    # Send each device the smallest of raw, compressed and delta (server-signed packages only).
    payload_variants: bool = True
    # Limits of the child process that runs an uploaded model through the engine and TFLM (model_check).
    model_check_seconds: float = 20.0  # CPU time: what stops a model that spins
    model_check_memory_mb: int = 512
    # Wall time: a backstop only, several times the CPU limit (a loaded machine makes fine checks wait).
    model_check_wall_seconds: float = 120.0
    # How long raw telemetry reports and their per-minute rollups are kept (seconds, 0: forever), and how
    # often the retention job runs. Raw reports also de-duplicate redeliveries: keep them for hours at least.
    telemetry_raw_retention_seconds: float = 7 * DAY
    telemetry_rollup_retention_seconds: float = 90 * DAY
    telemetry_prune_seconds: float = 300.0
    # GET /metrics without the API token (for a Prometheus that scrapes without credentials).
    metrics_public: bool = False
    log_format: str = "text"  # "json": one JSON object per log line
    # Drift alarms (services/drift.py): every `drift_check_seconds` (0: never), each model version in steady
    # state has its last `drift_window_seconds` of telemetry compared with the same length right after its
    # rollout completed; an alert opens when both hold `drift_min_inferences` and the class distribution's
    # JS divergence exceeds `drift_class_jsd_max` or mean confidence dropped by more than
    # `drift_confidence_max_drop` (absolute).
    drift_check_seconds: float = 60.0
    drift_window_seconds: float = 600.0
    drift_min_inferences: int = 1000
    drift_class_jsd_max: float = 0.05
    drift_confidence_max_drop: float = 0.05
    # URLs that get a JSON POST when an alert opens or resolves, each tried this many times (back-off).
    alert_webhooks: tuple[str, ...] = ()
    alert_webhook_attempts: int = 5
    # How devices prove who they are to the broker (docs/DEPLOY.md): "password" (the broker's password
    # file, reloaded per change: small setups) or "cert" (X.509 client certificates from the fleet CA,
    # CN = device id: fleet scale, adding a device never touches the broker).
    device_auth: str = "password"
    ca_dir: Path | None = None  # the fleet CA (default: data_dir/fleet-ca)
    ca_passphrase: str | None = None  # encrypts the CA key; required in production with cert auth
    # The gateway's TLS client certificate and key (cert auth: CN = the service user).
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    # Extra names (DNS or IP) in the broker certificate `--broker` makes, besides localhost/127.0.0.1.
    broker_cert_names: tuple[str, ...] = ()
    # Issue 16 (docs/DEPLOY.md, "Broker cluster"): the MQTT version the gateway speaks ("5" or "3.1.1",
    # for brokers without v5 such as RabbitMQ 3.10); device traffic read over AMQP 0-9-1 from a quorum
    # queue instead of MQTT subscriptions (amqp_intake.py); the /broker/auth/* routes a RabbitMQ cluster's
    # HTTP auth backend asks.
    mqtt_protocol: str = "5"
    # The cluster's other nodes (host, port) the gateway moves to when its node is gone.
    mqtt_other_nodes: tuple[tuple[str, int], ...] = ()
    amqp_url: str | None = None
    broker_auth_http: bool = False

    @property
    def fleet_ca_dir(self) -> Path:
        return self.ca_dir if self.ca_dir is not None else self.data_dir / "fleet-ca"

    @property
    def production(self) -> bool:
        return self.mode == "production"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def validate(self) -> Settings:
        if self.mode not in MODES:
            raise ConfigError(f"TINYFLEET_MODE must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not (MIN_CHUNK_SIZE <= self.default_chunk_size <= MAX_CHUNK_SIZE):
            raise ConfigError(
                f"TINYFLEET_CHUNK_SIZE must be in {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE},"
                f" got {self.default_chunk_size}"
            )
        if self.tick_seconds <= 0 or self.action_timeout_seconds <= 0:
            raise ConfigError("TINYFLEET_TICK_SECONDS and TINYFLEET_ACTION_TIMEOUT must be positive")
        if self.leader_check_seconds <= 0:
            raise ConfigError("TINYFLEET_LEADER_CHECK_SECONDS must be positive")
        if self.model_check_seconds <= 0 or self.model_check_wall_seconds <= 0:
            raise ConfigError(
                "TINYFLEET_MODEL_CHECK_SECONDS and TINYFLEET_MODEL_CHECK_WALL_SECONDS must be positive"
            )
        for what, value in (
            ("TINYFLEET_REPLICA_NAME", self.replica_name),
            ("TINYFLEET_MQTT_SHARED_GROUP", self.mqtt_shared_group),
        ):
            if not value.isprintable() or any(c in value for c in "/+#$ ") or len(value) > 64:
                raise ConfigError(f"{what} must be at most 64 printable characters without / + # $ or spaces")
        if not self.replica_name:
            raise ConfigError("TINYFLEET_REPLICA_NAME must not be empty")
        if self.max_upload_bytes < 1 or self.max_json_bytes < 1:
            raise ConfigError("TINYFLEET_MAX_UPLOAD_BYTES and TINYFLEET_MAX_JSON_BYTES must be positive")
        if (
            self.telemetry_batch_max < 1
            or not 1 <= self.telemetry_queue_max <= 65535
            or self.telemetry_batch_ms < 0
        ):
            raise ConfigError(
                "TINYFLEET_TELEMETRY_BATCH_MAX must be positive, TINYFLEET_TELEMETRY_QUEUE_MAX in 1..65535"
                " and TINYFLEET_TELEMETRY_BATCH_MS not negative"
            )
        if self.telemetry_raw_retention_seconds < 0 or self.telemetry_rollup_retention_seconds < 0:
            raise ConfigError(
                "TINYFLEET_TELEMETRY_RAW_RETENTION and TINYFLEET_TELEMETRY_ROLLUP_RETENTION"
                " must not be negative"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"TINYFLEET_LOG_FORMAT must be text or json, got {self.log_format!r}")
        self._validate_drift()
        if self.device_auth not in DEVICE_AUTHS:
            raise ConfigError(f"TINYFLEET_DEVICE_AUTH must be password or cert, got {self.device_auth!r}")
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ConfigError("TINYFLEET_MQTT_CERT_FILE and TINYFLEET_MQTT_KEY_FILE go together")
        if self.mqtt_url:
            MqttUrl.parse(self.mqtt_url)
        if self.mqtt_protocol not in MQTT_PROTOCOLS:
            raise ConfigError(f"TINYFLEET_MQTT_PROTOCOL must be 5 or 3.1.1, got {self.mqtt_protocol!r}")
        if self.amqp_url and not self.amqp_url.startswith(("amqp://", "amqps://")):
            raise ConfigError("TINYFLEET_AMQP_URL must start with amqp:// or amqps://")
        if self.device_mqtt_url:
            MqttUrl.parse(self.device_mqtt_url)
        reloads = self.mqtt_broker_pid_file or self.mqtt_reload_command
        if reloads and self.mqtt_password_file is None and self.device_auth != "cert":
            raise ConfigError(
                "TINYFLEET_MQTT_BROKER_PID_FILE and TINYFLEET_MQTT_RELOAD_COMMAND"
                " need TINYFLEET_MQTT_PASSWORD_FILE"
            )
        if self.mqtt_reload_command is not None:
            try:
                if not shlex.split(self.mqtt_reload_command):
                    raise ValueError("empty")
            except ValueError as exc:
                raise ConfigError(f"TINYFLEET_MQTT_RELOAD_COMMAND cannot be parsed: {exc}") from None
        if self.production:
            problems = []
            if self.api_token == DEFAULT_API_TOKEN:
                problems.append("TINYFLEET_API_TOKEN is the development default")
            elif len(self.api_token) < MIN_TOKEN_CHARS or token_entropy_bits(self.api_token) < MIN_TOKEN_BITS:
                problems.append(
                    f"TINYFLEET_API_TOKEN is too weak (needs at least {MIN_TOKEN_CHARS} characters and"
                    f" about {MIN_TOKEN_BITS} bits of entropy, e.g. `python -c 'import secrets;"
                    " print(secrets.token_urlsafe(32))'`)"
                )
            if self.signing_key_path is None:
                problems.append("TINYFLEET_SIGNING_KEY is not set (production never generates its own key)")
            if self.database_url == DEFAULT_DATABASE_URL:
                problems.append("TINYFLEET_DATABASE_URL is the development default")
            elif is_sqlite_url(self.database_url):
                problems.append("TINYFLEET_DATABASE_URL is SQLite (production needs PostgreSQL)")
            if self.device_auth == "cert" and not self.ca_passphrase:
                problems.append("TINYFLEET_CA_PASSPHRASE is not set (the fleet CA key must be encrypted)")
            if problems:
                raise ConfigError("refusing to start in production mode: " + "; ".join(problems))
        return self

    def _validate_drift(self) -> None:
        if self.drift_check_seconds < 0 or self.drift_window_seconds <= 0 or self.drift_min_inferences < 1:
            raise ConfigError(
                "TINYFLEET_DRIFT_CHECK_INTERVAL must not be negative, TINYFLEET_DRIFT_WINDOW and"
                " TINYFLEET_DRIFT_MIN_INFERENCES must be positive"
            )
        if not (0 <= self.drift_class_jsd_max <= 1 and 0 <= self.drift_confidence_max_drop <= 1):
            raise ConfigError(
                "TINYFLEET_DRIFT_CLASS_JSD_MAX and TINYFLEET_DRIFT_CONFIDENCE_MAX_DROP must be in 0..1"
            )
        if self.alert_webhook_attempts < 1:
            raise ConfigError("TINYFLEET_ALERT_WEBHOOK_ATTEMPTS must be at least 1")
        for url in self.alert_webhooks:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"TINYFLEET_ALERT_WEBHOOKS: not an http(s) URL: {url!r}")


def token_entropy_bits(token: str) -> float:
    """A conservative estimate of a token's entropy: log2 of the alphabet its character classes span,
    for each character that does not follow from the ones before it. A character follows when it
    repeats the previous one, continues a +1/-1 run ('abc', '987'), or continues a 3-character
    sequence seen earlier ('passpass'). Random tokens lose almost nothing; patterns lose most."""
    if not token:
        return 0.0
    pool = 0
    pool += 26 if any(c.islower() and c.isascii() for c in token) else 0
    pool += 26 if any(c.isupper() and c.isascii() for c in token) else 0
    pool += 10 if any(c.isdigit() and c.isascii() for c in token) else 0
    pool += 33 if any(not c.isalnum() or not c.isascii() for c in token) else 0
    free = 0
    for i, c in enumerate(token):
        step = ord(c) - ord(token[i - 1]) if i >= 1 else None
        if step == 0:
            continue
        if i >= 2 and step in (1, -1) and step == ord(token[i - 1]) - ord(token[i - 2]):
            continue
        if i >= 2 and token[i - 2 : i + 1] in token[:i]:
            continue
        free += 1
    return free * math.log2(pool)


def is_sqlite_url(url: str) -> bool:
    """SQLite however spelled: any sqlite dialect or driver (SQLITE://, sqlite+pysqlite://, ...), a
    file: URL, or a bare file path (no scheme at all)."""
    scheme, sep, _rest = url.strip().partition(":")
    if not sep or "/" in scheme or "\\" in scheme or len(scheme) == 1:  # a path (or C:\ drive letter)
        return True
    dialect = scheme.lower().split("+")[0]
    return dialect.startswith("sqlite") or dialect == "file"


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}


def _duration(env: dict[str, str], name: str, default: float) -> float:
    """Seconds, or a number with a unit: 90s, 30m, 12h, 7d."""
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    unit = DURATION_UNITS.get(raw[-1])
    try:
        return float(raw[:-1]) * unit if unit else float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be seconds or a number with s/m/h/d (e.g. 7d), got {raw!r}") from None


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1/0, true/false, yes/no or on/off, got {raw!r}")


MQTT_PROTOCOLS = ("5", "3.1.1")


def _nodes(env: dict[str, str], name: str) -> tuple[tuple[str, int], ...]:
    """`host:port,host:port` (a broker cluster's other nodes)."""
    nodes = []
    for item in env.get(name, "").split(","):
        host, sep, port = item.strip().rpartition(":")
        if not item.strip():
            continue
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be host:port,host:port,..., got {item.strip()!r}")
        nodes.append((host, int(port)))
    return tuple(nodes)


def _path(env: dict[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def settings_from_env(environ: dict[str, str] | None = None) -> Settings:
    """Build and validate Settings from TINYFLEET_* variables (os.environ by default)."""
    env = dict(os.environ if environ is None else environ)
    trusted = tuple(Path(p) for p in env.get("TINYFLEET_TRUSTED_KEYS", "").split(",") if p.strip())
    settings = Settings(
        mode=env.get("TINYFLEET_MODE", "development"),
        database_url=env.get("TINYFLEET_DATABASE_URL", DEFAULT_DATABASE_URL),
        api_token=env.get("TINYFLEET_API_TOKEN", DEFAULT_API_TOKEN),
        data_dir=Path(env.get("TINYFLEET_DATA_DIR", "./tinyfleet-data")),
        signing_key_path=_path(env, "TINYFLEET_SIGNING_KEY"),
        signing_key_passphrase=env.get("TINYFLEET_SIGNING_KEY_PASSPHRASE") or None,
        trusted_key_paths=trusted,
        mqtt_url=env.get("TINYFLEET_MQTT_URL") or None,
        device_mqtt_url=env.get("TINYFLEET_DEVICE_MQTT_URL") or None,
        mqtt_client_id=env.get("TINYFLEET_MQTT_CLIENT_ID")
        or env.get("TINYFLEET_REPLICA_NAME")
        or "tinyfleet-server",
        replica_name=env.get("TINYFLEET_REPLICA_NAME") or "tinyfleet-server",
        mqtt_shared_group=env.get("TINYFLEET_MQTT_SHARED_GROUP", "tinyfleet").strip(),
        leader_check_seconds=_float(env, "TINYFLEET_LEADER_CHECK_SECONDS", 1.0),
        mqtt_ca_file=_path(env, "TINYFLEET_MQTT_CA_FILE"),
        mqtt_password_file=_path(env, "TINYFLEET_MQTT_PASSWORD_FILE"),
        mqtt_password_file_owner=env.get("TINYFLEET_MQTT_PASSWORD_FILE_OWNER") or None,
        mqtt_password_file_group=env.get("TINYFLEET_MQTT_PASSWORD_FILE_GROUP") or None,
        mqtt_broker_pid_file=_path(env, "TINYFLEET_MQTT_BROKER_PID_FILE"),
        mqtt_reload_command=env.get("TINYFLEET_MQTT_RELOAD_COMMAND") or None,
        default_chunk_size=int(_float(env, "TINYFLEET_CHUNK_SIZE", DEFAULT_CHUNK_SIZE)),
        tick_seconds=_float(env, "TINYFLEET_TICK_SECONDS", 1.0),
        action_timeout_seconds=_float(env, "TINYFLEET_ACTION_TIMEOUT", 600.0),
        payload_variants=_flag(env, "TINYFLEET_PAYLOAD_VARIANTS", True),
        model_check_seconds=_float(env, "TINYFLEET_MODEL_CHECK_SECONDS", 20.0),
        model_check_memory_mb=int(_float(env, "TINYFLEET_MODEL_CHECK_MEMORY_MB", 512)),
        model_check_wall_seconds=_float(env, "TINYFLEET_MODEL_CHECK_WALL_SECONDS", 120.0),
        max_upload_bytes=int(_float(env, "TINYFLEET_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)),
        max_json_bytes=int(_float(env, "TINYFLEET_MAX_JSON_BYTES", DEFAULT_MAX_JSON_BYTES)),
        telemetry_batch_max=int(_float(env, "TINYFLEET_TELEMETRY_BATCH_MAX", 1000)),
        telemetry_batch_ms=_float(env, "TINYFLEET_TELEMETRY_BATCH_MS", 20.0),
        telemetry_queue_max=int(_float(env, "TINYFLEET_TELEMETRY_QUEUE_MAX", 5000)),
        telemetry_raw_retention_seconds=_duration(env, "TINYFLEET_TELEMETRY_RAW_RETENTION", 7 * DAY),
        telemetry_rollup_retention_seconds=_duration(env, "TINYFLEET_TELEMETRY_ROLLUP_RETENTION", 90 * DAY),
        metrics_public=_flag(env, "TINYFLEET_METRICS_PUBLIC", False),
        log_format=env.get("TINYFLEET_LOG_FORMAT", "text").strip().lower() or "text",
        drift_check_seconds=_duration(env, "TINYFLEET_DRIFT_CHECK_INTERVAL", 60.0),
        drift_window_seconds=_duration(env, "TINYFLEET_DRIFT_WINDOW", 600.0),
        drift_min_inferences=int(_float(env, "TINYFLEET_DRIFT_MIN_INFERENCES", 1000)),
        drift_class_jsd_max=_float(env, "TINYFLEET_DRIFT_CLASS_JSD_MAX", 0.05),
        drift_confidence_max_drop=_float(env, "TINYFLEET_DRIFT_CONFIDENCE_MAX_DROP", 0.05),
        alert_webhooks=tuple(
            u.strip() for u in env.get("TINYFLEET_ALERT_WEBHOOKS", "").split(",") if u.strip()
        ),
        alert_webhook_attempts=int(_float(env, "TINYFLEET_ALERT_WEBHOOK_ATTEMPTS", 5)),
        device_auth=env.get("TINYFLEET_DEVICE_AUTH", "password").strip().lower() or "password",
        ca_dir=_path(env, "TINYFLEET_CA_DIR"),
        ca_passphrase=env.get("TINYFLEET_CA_PASSPHRASE") or None,
        mqtt_cert_file=_path(env, "TINYFLEET_MQTT_CERT_FILE"),
        mqtt_key_file=_path(env, "TINYFLEET_MQTT_KEY_FILE"),
        broker_cert_names=tuple(
            n.strip() for n in env.get("TINYFLEET_BROKER_CERT_NAMES", "").split(",") if n.strip()
        ),
        mqtt_protocol=env.get("TINYFLEET_MQTT_PROTOCOL", "5").strip() or "5",
        mqtt_other_nodes=_nodes(env, "TINYFLEET_MQTT_OTHER_NODES"),
        amqp_url=env.get("TINYFLEET_AMQP_URL") or None,
        broker_auth_http=_flag(env, "TINYFLEET_BROKER_AUTH_HTTP", False),
    )
    return settings.validate()
