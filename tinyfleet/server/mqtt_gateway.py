"""MQTT gateway: the server's one MQTT client (paho-mqtt 2, MQTT v5).

The paho network thread only queues incoming messages; one worker thread handles them in order
(database work, chunk replies, telemetry batches), so a slow database never stalls the connection.
On every (re)connect the gateway subscribes and republishes every device's retained desired state,
which makes desired state eventually right even after a crash between a commit and a publish.
"""

from __future__ import annotations

import json
import logging
import queue
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tinyfleet.server.config import MqttUrl, Settings
from tinyfleet.server.models import Device
from tinyfleet.server.services.messages import KINDS, DeviceMessages, GatewayStats, Outgoing

log = logging.getLogger(__name__)

_REPUBLISH = object()
QUEUE_LIMIT = 20000


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
        )
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
        self._client.connect_async(self._url.host, self._url.port, keepalive=30)
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
        self.messages.flush_telemetry()
        self._client.disconnect()
        self._client.loop_stop()

    # --- paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connection refused: %s", reason)
            return
        client.subscribe([(f"tf/+/{kind}", 1) for kind in KINDS])
        self.connected.set()
        self.stats.count("events", "connects")
        self._enqueue(_REPUBLISH)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        self._enqueue((msg.topic, bytes(msg.payload)))

    def _enqueue(self, item: Any) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.count("events", "dropped_overload")

    # --- worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        flush_rows = self._settings.telemetry_flush_rows
        flush_age = self._settings.telemetry_flush_seconds
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=flush_age / 2)
            except queue.Empty:
                self.messages.flush_telemetry(max_rows=flush_rows, max_age=flush_age)
                continue
            try:
                if item is _REPUBLISH:
                    self._republish_all()
                elif item is not None:
                    topic, payload = item
                    for out in self.messages.handle(topic, payload):
                        self._send(out)
                self.messages.flush_telemetry(max_rows=flush_rows, max_age=flush_age)
            finally:
                self._queue.task_done()

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
