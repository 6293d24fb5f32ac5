"""Everything one running control plane holds: settings, database, keys, the device-message handler,
the rollout driver and (when a broker is configured) the MQTT gateway. It also carries out the effects
services register to run after a commit (services/effects.py)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tinyfleet.server.amqp_intake import AmqpIntake
from tinyfleet.server.config import ConfigError, MqttUrl, Settings
from tinyfleet.server.db import make_engine, session_scope, upgrade_to_head
from tinyfleet.server.models import Device
from tinyfleet.server.mqtt_gateway import MqttGateway
from tinyfleet.server.services.broker_reload import BrokerReloader
from tinyfleet.server.services.credentials import (
    FileAccess,
    hash_password,
    password_entries,
    write_password_file,
)
from tinyfleet.server.services.device_certs import blocked_devices, revoked_serials
from tinyfleet.server.services.drift import DriftJob
from tinyfleet.server.services.fleet_ca import FleetCA, FleetCAError
from tinyfleet.server.services.ids import check_service_username, is_device_id
from tinyfleet.server.services.leadership import Leadership
from tinyfleet.server.services.messages import DeviceMessages, GatewayStats
from tinyfleet.server.services.packages import PackageCache
from tinyfleet.server.services.periodic import PeriodicJob
from tinyfleet.server.services.rollout_driver import RolloutDriver
from tinyfleet.server.services.signer import ServerKeys, load_server_keys
from tinyfleet.server.services.telemetry_ingest import TelemetryIngest
from tinyfleet.server.services.variants import VariantBuilder

log = logging.getLogger(__name__)

BLOCKED_REFRESH_S = 5.0  # how soon a revocation made through another replica reaches this one
# CONNACK reasons that mean "these credentials are not accepted" (MQTT v5 codes, and v3.1.1's 4 and 5).
CREDENTIAL_REFUSALS = frozenset({4, 5, 134, 135})


@dataclass
class RecordingPublisher:
    """Desired states the rollout driver would publish when no broker is configured (visible in the API)."""

    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish_desired(self, device_id: str, desired: dict[str, Any]) -> None:
        self.sent.append((device_id, desired))


class _BlockedRefresh(PeriodicJob):
    name = "revoked-device refresh"

    def __init__(self, ctx: AppContext, interval: float) -> None:
        super().__init__(interval)
        self._ctx = ctx

    def run_once(self) -> object:
        self._ctx.refresh_blocked()
        return None


class AppContext:
    def __init__(self, settings: Settings, *, db: Engine | None = None) -> None:
        self.settings = settings
        self._check_broker_identity(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.db = db or make_engine(settings.database_url)
        upgrade_to_head(self.db)
        self.keys: ServerKeys = load_server_keys(settings)
        self.stats = GatewayStats()
        self.cache = PackageCache()
        self.rollout_driver = RolloutDriver(
            self.db,
            default_chunk_size=settings.default_chunk_size,
            tick_seconds=settings.tick_seconds,
            keys=self.keys,
        )
        # Compressed / delta re-signings, encoded on their own thread (seconds per model in Python).
        # Which replica runs what must run once (services/leadership.py); always this one on SQLite.
        self.leadership = Leadership(
            settings.database_url,
            settings.replica_name,
            on_gain=self._became_leader,
            on_lose=self._stepped_down,
            on_wake=self.rollout_driver.wake,
            interval=settings.leader_check_seconds,
        )
        self.rollout_driver.fence = self.leadership.fence
        self.leader_jobs: list[PeriodicJob] = []  # periodic jobs that run on the leader only
        self.variants = VariantBuilder(self.db, self.keys, on_ready=self.wake_rollouts)
        self.rollout_driver.variants = self.variants if settings.payload_variants else None
        self.messages = DeviceMessages(
            self.db,
            default_chunk_size=settings.default_chunk_size,
            cache=self.cache,
            stats=self.stats,
            on_change=self.wake_rollouts,
            served=self.rollout_driver.served,
        )
        self._passwd_lock = threading.Lock()
        self.broker_reloader = BrokerReloader(settings.mqtt_broker_pid_file, settings.mqtt_reload_command)
        self.fleet_ca: FleetCA | None = None
        if settings.device_auth == "cert":
            try:
                self.fleet_ca = FleetCA.open(
                    settings.fleet_ca_dir, settings.ca_passphrase, production=settings.production
                )
            except FleetCAError as exc:
                raise ConfigError(str(exc)) from None
        # Telemetry from the broker is stored in batches by its own writer (services/telemetry_ingest.py).
        self.telemetry_ingest = TelemetryIngest(
            self.db,
            self.stats,
            batch_max=settings.telemetry_batch_max,
            batch_ms=settings.telemetry_batch_ms,
            queue_max=settings.telemetry_queue_max,
        )
        self.gateway: MqttGateway | None = None
        if settings.mqtt_url:
            self.gateway = MqttGateway(settings, self.db, self.messages, self.telemetry_ingest)
            self.gateway.is_leader = lambda: self.leadership.is_leader
            self.rollout_driver.publisher = self.gateway
        # A RabbitMQ cluster (issue 16): device traffic over AMQP from a quorum queue (amqp_intake.py).
        self.amqp_intake: AmqpIntake | None = None
        if self.gateway is not None and settings.amqp_url:
            self.amqp_intake = AmqpIntake.from_setting(
                settings.amqp_url, self.gateway.accept, prefetch=settings.telemetry_queue_max
            )
            self.gateway.mqtt_intake = False
            self.gateway.republish_on_presence = True
            self.gateway.ack_delivery = self.amqp_intake.ack
        if self.gateway is None:
            self.rollout_driver.publisher = RecordingPublisher()
        self.sync_password_file()
        self._crl_lock = threading.Lock()
        if self.fleet_ca is not None:
            self._write_crl()
        self.drift = DriftJob(self.db, settings)  # drift alarms and their webhooks (services/drift.py)
        self.leader_jobs.append(self.drift)
        # Every replica: certificates revoked through another replica's API (cert mode, PostgreSQL).
        self.blocked_refresh: PeriodicJob | None = None
        if self.fleet_ca is not None and self.gateway is not None and not self.leadership.single:
            self.blocked_refresh = _BlockedRefresh(self, BLOCKED_REFRESH_S)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.db) as session:
            yield session

    def device_mqtt(self) -> MqttUrl | None:
        url = self.settings.device_mqtt_url or self.settings.mqtt_url
        return MqttUrl.parse(url) if url else None

    def start_background(self) -> None:
        if self.gateway is not None:
            self.telemetry_ingest.start()
            self.gateway.start()
        if self.amqp_intake is not None:
            self.amqp_intake.start()
        self.leadership.start()  # the leader (at once if the lock is free) starts the engine below
        if self.blocked_refresh is not None:
            self.blocked_refresh.start()

    def _became_leader(self) -> None:
        if self.rollout_driver.variants is not None:
            self.variants.start()
        self.rollout_driver.start()
        for job in self.leader_jobs:
            job.start()
        if self.gateway is not None:
            self.gateway.request_republish()  # the last leader may have died between commit and publish

    def _stepped_down(self) -> None:
        for job in self.leader_jobs:
            job.stop()
        self.rollout_driver.stop()
        self.variants.stop()

    def stop_background(self) -> None:
        self.leadership.stop()  # stops the engine if this replica runs it, then frees the lock
        self._stepped_down()  # and whatever a caller started by hand (each stop is idempotent)
        if self.blocked_refresh is not None:
            self.blocked_refresh.stop()
        if self.amqp_intake is not None:
            self.amqp_intake.pause()  # no new deliveries; the gateway's last acks still go out
        if self.gateway is not None:
            self.gateway.stop()  # stops the telemetry writer before disconnecting, so its acks go out
        if self.amqp_intake is not None:
            self.amqp_intake.stop()
        self.telemetry_ingest.stop()
        self.broker_reloader.stop()

    def close(self) -> None:
        self.stop_background()
        self.db.dispose()

    # --- effects after a commit (services.effects.Effects) -----------------------------------------

    def wake_rollouts(self) -> None:
        """Wake the rollout driver: this replica's if it leads, else the leader's (NOTIFY)."""
        self.rollout_driver.wake()
        self.leadership.wake_leader()

    def prepare_rollout(self, rollout_id: int) -> None:
        """A rollout started: have its devices' variants built ahead, on the builder's thread."""
        if self.rollout_driver.variants is not None and self.variants.running:
            self.variants.prepare_rollout(rollout_id)

    def publish_desired(self, device_id: str, desired: dict[str, Any]) -> None:
        self.rollout_driver.publish([(device_id, desired)])

    def forget_device(self, device_id: str) -> None:
        self.messages.forget_device(device_id)
        self.telemetry_ingest.forget_device(device_id)

    def certificates_revoked(self) -> None:
        """Revoked certificates: rewrite the CRL and have the broker re-read it (mosquitto does on SIGHUP),
        and let the gateway drop the messages of devices left without a valid certificate meanwhile."""
        self._write_crl()
        self.broker_reloader.request()

    def certificates_issued(self, device_ids: list[str]) -> None:
        with self._crl_lock:
            if self.gateway is not None and self.gateway.blocked_devices:
                self.gateway.blocked_devices = self.gateway.blocked_devices - set(device_ids)

    def refresh_blocked(self) -> None:
        """Re-read which devices have no valid certificate left (revoked through any replica)."""
        with self._crl_lock, Session(self.db) as session:
            blocked = blocked_devices(session)
        if self.gateway is not None:
            self.gateway.blocked_devices = blocked

    def _write_crl(self) -> None:
        if self.fleet_ca is None:
            return
        with self._crl_lock, Session(self.db) as session:
            entries = revoked_serials(session)
            blocked = blocked_devices(session)
            self.fleet_ca.write_crl(entries)
        if self.gateway is not None:
            self.gateway.blocked_devices = blocked

    def _check_broker_identity(self, settings: Settings) -> None:
        """Refuse to start when the gateway's MQTT user could be a device id (a device provisioned under
        it would take the gateway's password and rights) or the password file's owner/group is unknown."""
        url = MqttUrl.parse(settings.mqtt_url) if settings.mqtt_url else None
        if url is not None and url.username:
            try:
                check_service_username(url.username)
            except ValueError as exc:
                raise ConfigError(f"TINYFLEET_MQTT_URL: {exc}") from None
        try:
            self._passwd_access = FileAccess.resolve(
                settings.mqtt_password_file_owner, settings.mqtt_password_file_group
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def broker_refusal(self) -> str | None:
        """Why the broker last refused the gateway's CONNECT (None once it accepts): /readyz says it."""
        reason = self.gateway.last_refusal if self.gateway is not None else None
        return None if reason is None else self._describe_refusal(reason)

    def _describe_refusal(self, reason: Any) -> str:
        if getattr(reason, "value", None) not in CREDENTIAL_REFUSALS:
            return f"broker refused the gateway's connection: {reason}"
        hint = "check the password in TINYFLEET_MQTT_URL"
        if self.settings.mqtt_password_file is not None:
            hint = (
                f"can the broker's user read {self.settings.mqtt_password_file}? set"
                " TINYFLEET_MQTT_PASSWORD_FILE_GROUP or _OWNER (deploy/README.md)"
            )
        return f"broker refused the gateway's credentials: {reason} ({hint})"

    def add_password_entry(self, username: str, encoded: str) -> None:
        """Append one new device to the broker's password file (cheap: provisioning a fleet one device
        at a time must not rewrite the whole file each time)."""
        self.add_password_entries([(username, encoded)])

    def add_password_entries(self, entries: list[tuple[str, str]]) -> None:
        """Append new devices to the broker's password file in one write, then one reload request."""
        path = self.settings.mqtt_password_file
        if path is None:
            return
        lines = []
        for username, encoded in entries:
            if not is_device_id(username):  # never a second line for a service account (schemas refuse it)
                log.error("device %r not added to the MQTT password file: not a valid device id", username)
                continue
            lines.append(f"{username}:{encoded}\n")
        if not lines:
            return
        with self._passwd_lock:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="ascii") as f:
                self._passwd_access.apply(f.fileno(), path)
                f.write("".join(lines))
            self.broker_reloader.request()

    def sync_password_file(self) -> None:
        """Rewrite the broker's password file (devices plus the gateway's own user), if configured."""
        path = self.settings.mqtt_password_file
        if path is None:
            return
        with self._passwd_lock:
            self._write_password_file(path)
            self.broker_reloader.request()

    def _write_password_file(self, path: Path) -> None:
        services: list[tuple[str, str]] = []
        url = MqttUrl.parse(self.settings.mqtt_url) if self.settings.mqtt_url else None
        if url is not None and url.username and url.password:
            services.append((url.username, hash_password(url.password)))
        services += _other_service_accounts(path, {user for user, _ in services})
        with Session(self.db) as session:
            devices = list(session.exec(select(Device.id, Device.mqtt_password_hash).order_by(Device.id)))
        entries = password_entries(services, devices)
        write_password_file(path, entries, self._passwd_access)
        how = (
            "reloading the broker"
            if self.broker_reloader.configured
            else "send SIGHUP to mosquitto to reload"
        )
        log.info("wrote %d MQTT credentials to %s (%s)", len(entries), path, how)


def _other_service_accounts(path: Path, ours: set[str]) -> list[tuple[str, str]]:
    """Service accounts already in the password file besides ours: the other replicas' gateway users
    (docs/DEPLOY.md "Replicas"), which a replica rewriting the file must keep."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    kept = []
    for line in lines:
        user, sep, encoded = line.partition(":")
        if sep and encoded and user not in ours and not is_device_id(user):
            try:
                kept.append((check_service_username(user), encoded))
            except ValueError:
                continue
    return kept
