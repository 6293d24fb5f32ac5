"""MQTT gateway: the server's one MQTT client (paho-mqtt 2, MQTT v5).

The paho network thread only queues incoming messages; one worker thread handles them in order
(database work, chunk replies), so a slow database never stalls the connection. It takes what is queued
(up to BATCH_MAX messages, without waiting for more) and handles it in one transaction
(DeviceMessages.handle_batch: the batch's rows read in a few queries, a savepoint per message only if one
fails): one transaction per status message cost most of the server's time in a large rollout (issue 12).
Telemetry goes to its own
batching writer (services/telemetry_ingest.py), its one path, which acknowledges each message once its
batch is stored.
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
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    StoreConflict,
    StoreUnavailable,
    split_topic,
)
from tinyfleet.server.services.telemetry_ingest import TelemetryIngest

log = logging.getLogger(__name__)

_REPUBLISH = object()
_NOTHING = object()
# A device message as queued: topic, payload, connection generation, packet id, QoS.
_Message = tuple[str, bytes, int, int, int]
_T = TypeVar("_T")
QUEUE_LIMIT = 20000
# How long the broker keeps the server's session (subscriptions, undelivered messages) while it is away.
SESSION_EXPIRY_S = 7 * 24 * 3600
# How often an idle worker looks at the stop flag.
IDLE_WAIT_S = 0.5
RETRY_MIN_S, RETRY_MAX_S = 0.1, 5.0
# Device messages handled in one database transaction at most (issue 12): those already queued when the
# worker takes one, without waiting for more.
BATCH_MAX = 200


@dataclass(frozen=True)
class _TelemetryBarrier:
    """Queued before a reported state: the worker waits until telemetry up to `number` is checked."""

    number: int


def desired_topic(device_id: str) -> str:
    return f"tf/{device_id}/desired"


def _says_online(payload: bytes) -> bool:
    try:
        doc = json.loads(payload)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("online") is True


def _device_of(topic: str) -> str | None:
    parts = topic.split("/", 2)
    return parts[1] if len(parts) > 1 else None


class MqttGateway:
    def __init__(
        self,
        settings: Settings,
        db: Engine,
        messages: DeviceMessages,
        telemetry_ingest: TelemetryIngest | None = None,
    ) -> None:
        if not settings.mqtt_url:
            raise ValueError("the MQTT gateway needs TINYFLEET_MQTT_URL")
        self._settings = settings
        self._url = MqttUrl.parse(settings.mqtt_url)
        self._db = db
        self.messages = messages
        self.stats: GatewayStats = messages.stats
        # Telemetry's one path: this batching writer (AppContext passes its own; started with the gateway).
        self.telemetry_ingest = telemetry_ingest or TelemetryIngest(
            db,
            self.stats,
            batch_max=settings.telemetry_batch_max,
            batch_ms=settings.telemetry_batch_ms,
            queue_max=settings.telemetry_queue_max,
        )
        # Other messages queued for / handled by the worker: telemetry waits for those received before it.
        self._enqueued = 0
        self._handled = 0
        self._barrier_at = 0  # the telemetry number of the last _TelemetryBarrier queued
        self._handled_cond = threading.Condition()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.connected = threading.Event()
        # MQTT 3.1.1 (TINYFLEET_MQTT_PROTOCOL, for brokers without v5): the persistent session is
        # clean_session=False, kept by the broker until the client comes back (no expiry interval).
        self._v5 = settings.mqtt_protocol != "3.1.1"
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.mqtt_client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        # Issue 16: device messages may come from elsewhere (amqp_intake.py feeds `accept`): then the
        # gateway subscribes to nothing, acknowledges through `ack_delivery`, and republishes a device's
        # desired state when it comes online (a clustered broker's retained messages are node-local).
        self.mqtt_intake = True
        self.ack_delivery: Callable[[int, int, int], None] = self._mqtt_ack
        self.republish_on_presence = False
        # Connection generation: a packet id is only valid on the connection that delivered it.
        self._generation = 0
        self._unacked: list[tuple[int, int, int]] = []  # (generation, mid, qos), in delivery order
        self._store_down = False
        self._unhealthy_at = 0.0
        # The broker's last refusal of our CONNECT (None once accepted), for /readyz; and the last
        # disconnect reason logged, so a broker that keeps saying no is logged once, not every retry.
        self.last_refusal: Any = None
        self._logged_loss: str | None = None
        # Devices whose certificates are all revoked (cert mode; AppContext keeps it current): their
        # messages are acknowledged and dropped, as a revoked device may stay connected until it leaves.
        self.blocked_devices: frozenset[str] = frozenset()
        # Only the leader replica republishes desired states on (re)connect: a follower's copy, read
        # before the leader's next change and sent after it, would overwrite it (services/leadership.py).
        self.is_leader: Callable[[], bool] = lambda: True
        if self._url.username:
            self._client.username_pw_set(self._url.username, self._url.password)
        if self._url.tls:
            ca = str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None
            cert = str(settings.mqtt_cert_file) if settings.mqtt_cert_file else None
            key = str(settings.mqtt_key_file) if settings.mqtt_key_file else None
            self._client.tls_set(ca_certs=ca, certfile=cert, keyfile=key, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        # A broker cluster (TINYFLEET_MQTT_OTHER_NODES): the next node gets the next attempt whenever the
        # current one cannot be reached or drops us (same credentials and TLS settings).
        self._nodes = [(self._url.host, self._url.port), *settings.mqtt_other_nodes]
        self._node = 0
        self._connect_props: Any = None
        self._client.on_connect_fail = self._on_connect_fail

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, wait_seconds: float = 10.0) -> None:
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="tinyfleet-gateway", daemon=True)
        self._worker.start()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        # The broker's in-flight window for us (mosquitto's max_inflight_messages otherwise, 20 by
        # default): telemetry batches can only be as large as what is delivered but not yet acked.
        props.ReceiveMaximum = self.telemetry_ingest.queue_max
        self.telemetry_ingest.handled_up_to = self._handled_up_to
        self.telemetry_ingest.start()
        self._connect_props = props
        self._connect_async(*self._nodes[self._node])
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
        self.telemetry_ingest.stop()  # stores what is queued and acks it while still connected
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
        if self.mqtt_intake:
            self._subscribe(client)
        self._generation += 1
        self._unhealthy_at = time.time()
        self.connected.set()
        self.stats.count("events", "connects")
        if self.is_leader():
            self._enqueue(_REPUBLISH)

    def _subscribe(self, client: mqtt.Client) -> None:
        """Device topics, QoS 1. With replicas, as members of one shared subscription: the broker gives
        each message to one replica (docs/DEPLOY.md "Replicas"). The plain form is dropped, in case the
        persistent session still has it from an older version (each message would come twice)."""
        group = self._settings.mqtt_shared_group
        plain = [f"tf/+/{kind}" for kind in KINDS]
        shared = [f"$share/{group}/{topic}" for topic in plain] if group else []
        client.subscribe([(topic, 1) for topic in (shared or plain)])
        if shared:
            client.unsubscribe(plain)

    def request_republish(self) -> None:
        """Republish every device's retained desired state (a replica that just became the leader: the
        previous one may have died between a commit and its publish)."""
        self._enqueue(_REPUBLISH)

    def _connect_async(self, host: str, port: int) -> None:
        if self._v5:
            self._client.connect_async(
                host, port, keepalive=30, clean_start=False, properties=self._connect_props
            )
        else:  # 3.1.1: no properties; the broker's own in-flight limit applies
            self._client.connect_async(host, port, keepalive=30)

    def _next_node(self) -> None:
        """Point paho's next reconnect at the cluster's next node (called on paho's thread)."""
        if len(self._nodes) > 1 and not self._stop.is_set():
            self._node = (self._node + 1) % len(self._nodes)
            self._connect_async(*self._nodes[self._node])

    def _on_connect_fail(self, _c: mqtt.Client, _ud: Any) -> None:
        self._next_node()

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._next_node()
        self.connected.clear()
        self._unhealthy_at = time.time()
        if not self._stop.is_set() and str(reason) != self._logged_loss:
            self._logged_loss = str(reason)
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        self.accept(msg.topic, bytes(msg.payload), self._generation, msg.mid, msg.qos)

    def accept(self, topic: str, payload: bytes, generation: int, mid: int, qos: int) -> None:
        """A device message delivered (by paho, or by the AMQP intake on its own thread; one caller at
        a time): queued for the worker, acknowledged through `ack_delivery` once handled."""
        if self.blocked_devices and _device_of(topic) in self.blocked_devices:
            # A revoked device still connected (cert mode): acknowledged, so never redelivered, and dropped.
            self.stats.count("events", "revoked_dropped")
            if qos > 0:
                self.ack_delivery(generation, mid, qos)
            return
        if topic.endswith("/telemetry"):
            parsed = split_topic(topic)
            if parsed is not None and parsed[1] == "telemetry" and parsed[0].isprintable():
                # Blocks while the writer's queue is full: paho stops reading, the broker holds the rest.
                # Acknowledged by the writer once stored; not taken (stopping): the broker redelivers it.
                ack = partial(self._ack_stored, generation, mid, qos)
                self.telemetry_ingest.submit(parsed[0], payload, ack, self._enqueued)
                return
        ingest = self.telemetry_ingest
        if topic.endswith("/reported") and ingest.submitted > self._barrier_at:
            self._barrier_at = ingest.submitted
            self._enqueue(_TelemetryBarrier(ingest.submitted))
        item = (topic, payload, generation, mid, qos)
        # Noted before the worker can see it: it skips requests that arrived before their chunk left.
        asker = topic[3:-10] if topic.endswith("/chunk/req") else None
        if asker is not None:
            self.messages.chunk_order.arrived(asker, item[1], time.monotonic())
        if not self._enqueue(item):
            # Not acknowledged either: the broker redelivers it after the next reconnect.
            self.stats.count("events", "dropped_overload")
            if asker is not None:
                self.messages.chunk_order.withdraw(asker, item[1])

    def _enqueue(self, item: Any) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        self._enqueued += 1
        return True

    # --- worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._queue.get(timeout=IDLE_WAIT_S)
            except queue.Empty:
                continue
            # Device messages already queued behind it are handled with it, in one transaction; an item
            # of another sort ends the batch and is handled after the batch is committed.
            batch: list[_Message] = []
            control = item
            while isinstance(control, tuple):
                batch.append(control)
                control = _NOTHING
                if len(batch) >= BATCH_MAX:
                    break
                try:
                    control = self._queue.get_nowait()
                except queue.Empty:
                    break
            try:
                if batch:
                    self._handle(batch)
            finally:
                self._done(len(batch))
            if control is _NOTHING:
                continue
            try:
                if control is _REPUBLISH:
                    self._republish_all()
                elif isinstance(control, _TelemetryBarrier):
                    # A reported state next: its device's earlier telemetry is checked against the old one.
                    self.telemetry_ingest.wait_validated(control.number, self._stop)
            finally:
                if control is None:  # stop() wakes the worker with it; not a message
                    self._queue.task_done()
                else:
                    self._done(1)

    def _done(self, count: int) -> None:
        """`count` items taken from the queue are done with: telemetry waiting for them may go on."""
        for _ in range(count):
            self._queue.task_done()
        if count:
            with self._handled_cond:
                self._handled += count
                self._handled_cond.notify_all()

    def _handled_up_to(self, count: int) -> int | None:
        """Wait until the worker handled the first `count` messages; how many it has (None when stopping).
        Telemetry ingest calls it: a device's reported state is handled before its later telemetry."""
        with self._handled_cond:
            while self._handled < count:
                if self._stop.is_set():
                    return None
                self._handled_cond.wait(0.1)
            return self._handled

    def _handle(self, batch: list[_Message]) -> None:
        """Handle device messages in one transaction (in order; replies sent as they are made), then
        acknowledge them: they are committed."""
        pairs = [(topic, payload) for topic, payload, _generation, _mid, _qos in batch]
        answered: set[int] = set()  # kept over retries: chunk requests answered are not answered twice
        done = self._retrying(lambda: self.messages.handle_batch(pairs, self._send, answered))
        if done is None:
            return  # stopping while the database is down: left unacknowledged for the next session
        self.stats.count("events", "message_batches")
        for _topic, _payload, generation, mid, qos in batch:
            if qos > 0:
                self._unacked.append((generation, mid, qos))
        if self.republish_on_presence:
            self._republish_online(batch)
        self._ack_all()

    def _retrying(self, fn: Callable[[], _T]) -> _T | None:
        """fn() until the database answers (back-off up to RETRY_MAX_S); None if stopped meanwhile."""
        delay = RETRY_MIN_S
        while True:
            try:
                result = fn()
            except StoreConflict as exc:
                # Another replica's transaction won a deadlock: the database is up, run the batch again.
                log.warning(
                    "database conflict with another replica, batch retried: %s", str(exc).split("\n")[0]
                )
                self.stats.count("events", "db_conflict_retries")
                if self._stop.wait(RETRY_MIN_S * random.random()):
                    return None
                continue
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
            if qos > 0:
                self.ack_delivery(generation, mid, qos)
        self._unacked.clear()

    def _ack_stored(self, generation: int, mid: int, qos: int) -> None:
        """A telemetry message is stored (called on the ingest writer's thread; paho queues the PUBACK)."""
        if qos > 0:
            self.ack_delivery(generation, mid, qos)

    def _mqtt_ack(self, generation: int, mid: int, qos: int) -> None:
        if generation == self._generation:
            self._client.ack(mid, qos)
            self.stats.count("events", "acked")

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

    def _republish_online(self, batch: list[_Message]) -> None:
        """Devices that said they are online get their desired state again: on a broker cluster the
        retained copy lives on the node the server publishes through, not on the one the device joined."""
        online = [
            device_id
            for topic, payload, *_rest in batch
            if topic.endswith("/presence") and _says_online(payload) and (device_id := _device_of(topic))
        ]
        if online:
            self._republish(col(Device.id).in_(online))

    def _republish_all(self) -> None:
        self._republish(col(Device.desired).is_not(None))

    def _republish(self, which: Any) -> None:
        try:
            with Session(self._db) as session:
                rows = list(session.exec(select(Device.id, Device.desired).where(which)))
        except Exception as exc:  # the database is down: the next (re)connect or presence tries again
            log.warning("could not read desired states to republish: %s", exc)
            return
        for device_id, desired in rows:
            if desired:
                self.publish_desired(device_id, dict(desired))

    # --- used by the rollout driver -------------------------------------------------------------

    def publish_desired(self, device_id: str, desired: dict[str, Any]) -> None:
        payload = json.dumps(desired, separators=(",", ":")).encode()
        self._send(Outgoing(desired_topic(device_id), payload, retain=True))
        self.stats.count("events", "desired_published")

    def backlog(self) -> int:
        """Device messages received and not yet handled: the rollout driver paces downloads by it."""
        return self._queue.qsize()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until queued messages are handled (tests and shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return self.telemetry_ingest.wait_idle(max(0.0, deadline - time.monotonic()))
            time.sleep(0.01)
        return False
