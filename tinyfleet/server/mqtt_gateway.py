"""MQTT gateway: the server's one MQTT client (paho-mqtt 2, MQTT v5).

The paho network thread only queues incoming messages; one worker thread handles them in order
(database work, chunk replies, telemetry batches), so a slow database never stalls the connection.
On every (re)connect the gateway subscribes and republishes every device's retained desired state,
which makes desired state eventually right even after a crash between a commit and a publish.

Nothing the broker delivered is lost (issue 11): the session is persistent (clean_start False, a session
expiry, the stable client id), device topics are QoS 1, and a message is acknowledged only once what it
carries is committed (manual acks; telemetry once its batch is stored). While the database is down the
worker retries the same message with back-off; unacknowledged messages stay with the broker, which
redelivers them after a reconnect or a server restart. Redelivery means at-least-once: telemetry with a
seq is stored once (services/telemetry.store), status and presence are idempotent.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tinyfleet.server.config import MqttUrl, Settings
from tinyfleet.server.models import Device
from tinyfleet.server.services.messages import (
    KINDS,
    DeviceMessages,
    GatewayStats,
    Outgoing,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

_REPUBLISH = object()
_T = TypeVar("_T")
QUEUE_LIMIT = 20000
# How long the broker keeps the server's session (subscriptions, undelivered messages) while it is away.
SESSION_EXPIRY_S = 7 * 24 * 3600
# Unacknowledged messages block the broker's in-flight window: store and ack after this much quiet.
IDLE_FLUSH_S = 0.002
RETRY_MIN_S, RETRY_MAX_S = 0.1, 5.0


def desired_topic(device_id: str) -> str:
    return f"tf/{device_id}/desired"


class MqttGateway:
    def __init__(self, settings: Settings, db: Engine, messages: DeviceMessages) -> None:
        if not settings.mqtt_url:
            raise ValueError("the MQTT gateway needs TINYFLEET_MQTT_URL")
        self._settings = settings
        self._url = MqttUrl.parse(settings.mqtt_url)
        self._db = db
        self.messages = messages
        self.stats: GatewayStats = messages.stats
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.connected = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        # Connection generation: a packet id is only valid on the connection that delivered it.
        self._generation = 0
        self._unacked: list[tuple[int, int, int]] = []  # (generation, mid, qos), in delivery order
        self._store_down = False
        self._unhealthy_at = 0.0
        # The broker's last refusal of our CONNECT (None once accepted), for /readyz; and the last
        # disconnect reason logged, so a broker that keeps saying no is logged once, not every retry.
        self.last_refusal: Any = None
        self._logged_loss: str | None = None
        if self._url.username:
            self._client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            ca = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
            self._client.tls_set(ca_certs=ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, wait_seconds: float = 10.0) -> None:
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="tinyfleet-gateway", daemon=True)
        self._worker.start()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self._url.host, self._url.port, keepalive=30, clean_start=False, properties=props
        )
        self._client.loop_start()
        if wait_seconds and not self.connected.wait(wait_seconds):
            log.warning(
                "MQTT broker %s:%s not reachable yet; retrying in the background",
                self._url.host,
                self._url.port,
            )

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._worker is not None:
            self._worker.join(timeout=10)
            self._worker = None
        try:
            self.messages.flush_telemetry()
            self._ack_all()
        except StoreUnavailable:
            log.warning("database unreachable at shutdown; the broker keeps the unacknowledged messages")
        self._client.disconnect()
        self._client.loop_stop()

    # --- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            if self.last_refusal is None or str(reason) != str(self.last_refusal):
                log.error("MQTT connection refused: %s", reason)
            self.last_refusal = reason
            return
        if self.last_refusal is not None:
            log.warning("MQTT broker accepts the gateway again")
        self.last_refusal = None
        self._logged_loss = None
        client.subscribe([(f"tf/+/{kind}", 1) for kind in KINDS])
        self._generation += 1
        self._unhealthy_at = time.time()
        self.connected.set()
        self.stats.count("events", "connects")
        self._enqueue(_REPUBLISH)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        self._unhealthy_at = time.time()
        if not self._stop.is_set() and str(reason) != self._logged_loss:
            self._logged_loss = str(reason)
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        item = (msg.topic, bytes(msg.payload), self._generation, msg.mid, msg.qos)
        if not self._enqueue(item):
            # Not acknowledged either: the broker redelivers it after the next reconnect.
            self.stats.count("events", "dropped_overload")

    def _enqueue(self, item: Any) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    # --- worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        flush_rows = self._settings.telemetry_flush_rows
        flush_age = self._settings.telemetry_flush_seconds
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=IDLE_FLUSH_S if self._unacked else flush_age / 2)
            except queue.Empty:
                # Quiet: store what is buffered now, so that its acks free the broker's in-flight window.
                if self._retrying(self.messages.flush_telemetry):
                    self._ack_all()
                continue
            try:
                if item is _REPUBLISH:
                    self._republish_all()
                elif item is not None:
                    self._handle(item, flush_rows, flush_age)
            finally:
                self._queue.task_done()

    def _handle(self, item: tuple[str, bytes, int, int, int], flush_rows: int, flush_age: float) -> None:
        topic, payload, generation, mid, qos = item
        done = self._retrying(lambda: self.messages.handle(topic, payload))
        if done is None:
            return  # stopping while the database is down: left unacknowledged for the next session
        for out in done:
            self._send(out)
        if qos > 0:
            self._unacked.append((generation, mid, qos))
        flush = partial(self.messages.flush_telemetry, max_rows=flush_rows, max_age=flush_age)
        if self._retrying(flush) is not None and self.messages.telemetry_pending() == 0:
            self._ack_all()

    def _retrying(self, fn: Callable[[], _T]) -> _T | None:
        """fn() until the database answers (back-off up to RETRY_MAX_S); None if stopped meanwhile."""
        delay = RETRY_MIN_S
        while True:
            try:
                result = fn()
            except StoreUnavailable as exc:
                if not self._store_down:
                    log.warning("database unreachable (%s); holding device messages and retrying", exc)
                self._store_down = True
                self._unhealthy_at = time.time()
                self.stats.count("events", "db_retries")
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if self._store_down:
                log.warning("database reachable again")
                self._store_down = False
                self._unhealthy_at = time.time()
            return result

    def _ack_all(self) -> None:
        """Acknowledge every handled message (all stored). Acks for an earlier connection are skipped:
        the broker redelivers those messages and their packet ids may now name other messages."""
        for generation, mid, qos in self._unacked:
            if generation == self._generation:
                self._client.ack(mid, qos)
                self.stats.count("events", "acked")
        self._unacked.clear()

    def last_unhealthy(self) -> float:
        """When device messages last could not reach the database (now while they cannot): the rollout
        driver counts action timeouts from here, as status messages may have been held meanwhile."""
        if self._store_down or not self.connected.is_set():
            return time.time()
        return self._unhealthy_at

    def _send(self, out: Outgoing) -> None:
        info = self._client.publish(out.topic, out.payload, qos=1, retain=out.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.stats.count("events", "publish_failed")

    def _republish_all(self) -> None:
        try:
            with Session(self._db) as session:
                rows = list(
                    session.exec(select(Device.id, Device.desired).where(col(Device.desired).is_not(None)))
                )
        except Exception:
            log.exception("could not read desired states to republish")
            return
        for device_id, desired in rows:
            if desired:
                self.publish_desired(device_id, dict(desired))

    # --- used by the rollout driver -------------------------------------------------------------

    def publish_desired(self, device_id: str, desired: dict[str, Any]) -> None:
        payload = json.dumps(desired, separators=(",", ":")).encode()
        self._send(Outgoing(desired_topic(device_id), payload, retain=True))
        self.stats.count("events", "desired_published")

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until queued messages are handled (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False
