"""Device traffic from a RabbitMQ cluster over AMQP 0-9-1 (issue 16, docs/DEPLOY.md "Broker cluster").

RabbitMQ 3.10's MQTT plugin has no shared subscriptions, so server replicas cannot split device traffic
through MQTT. Instead every replica consumes from ONE durable quorum queue (replicated on the cluster's
nodes, so it survives losing a node) bound to the MQTT exchange for what devices publish, so each message
is handled by one replica. Every replica consumes at once (competing consumers), so two messages of one
device may be handled out of order by two replicas: what depends on order carries a per-device sequence
the server checks under the device's row lock (PROTOCOL 4.2 reported, 4.6 presence), statuses never
leave a final state, and telemetry is stored once per (boot, seq). MQTT topic
`tf/ID/status` arrives as routing key `tf.ID.status`. Messages are fed to the gateway's worker
(`MqttGateway.accept`) and acknowledged (manual acks) only once handled, exactly like the gateway's own
MQTT deliveries: a replica that dies leaves its unacknowledged messages to the next consumer.

pika's BlockingConnection is not thread-safe: everything on it runs on this module's thread; acks from
the gateway's threads are handed over with `add_callback_threadsafe`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions

log = logging.getLogger(__name__)
# pika logs every connection step at INFO and a node that dies as three ERRORs, one with a traceback;
# the intake logs that in one line itself ("AMQP node ... unavailable").
logging.getLogger("pika").setLevel(logging.CRITICAL)

QUEUE = "tinyfleet.device-messages"
EXCHANGE = "amq.topic"
# What devices publish (PROTOCOL.md 4), as routing keys: MQTT "/" is AMQP ".".
BINDINGS = ("tf.*.reported", "tf.*.presence", "tf.*.status", "tf.*.telemetry", "tf.*.chunk.req")
RETRY_S = 1.0
# No single active consumer (an earlier version's): every replica takes its share. Reordering between
# replicas once left devices offline for good (a last will handled after the newer online); presence now
# carries the connection's (boot, seq) and an older one is dropped (docs/DEPLOY.md "Broker cluster").
QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}

Accept = Callable[[str, bytes, int, int, int], None]


def topic_of(routing_key: str) -> str:
    """`tf.ID.chunk.req` -> `tf/ID/chunk/req` (device ids hold no dots, PROTOCOL.md 4.6)."""
    return routing_key.replace(".", "/")


class AmqpIntake:
    """Consumes the device-message queue on one of `urls` (tried in turn) and feeds `accept`."""

    def __init__(self, urls: list[str], accept: Accept, prefetch: int = 1000) -> None:
        if not urls:
            raise ValueError("the AMQP intake needs at least one URL")
        self._urls = urls
        self._accept = accept
        self._prefetch = max(1, min(prefetch, 65535))
        self._generation = 0
        self._conn: Any = None
        self._channel: Any = None
        self._tag: str | None = None
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.node_url: str | None = None  # the URL of the node it consumes from now
        self.connects = 0
        self.old_queue = False  # the queue has arguments of an earlier version (_declare)

    @classmethod
    def from_setting(cls, value: str, accept: Accept, prefetch: int = 1000) -> AmqpIntake:
        """TINYFLEET_AMQP_URL: one URL or several (comma-separated, one per cluster node)."""
        return cls([u.strip() for u in value.split(",") if u.strip()], accept, prefetch)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tinyfleet-amqp-intake", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop taking new deliveries; acks still go out (shutdown: the gateway acks what it handled)."""
        self._paused.set()
        self._call(self._cancel)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None

    # --- acks (any thread) ---------------------------------------------------------------------

    def ack(self, generation: int, delivery_tag: int, _qos: int) -> None:
        """Acknowledge a delivery once handled; one from an earlier connection is skipped (the broker
        has already requeued it, and its tag may now name another message)."""
        if generation == self._generation:
            self._call(
                lambda: self._channel.basic_ack(delivery_tag) if self._generation == generation else None
            )

    def _call(self, fn: Callable[[], Any]) -> None:
        conn = self._conn
        if conn is None:
            return
        # A connection already gone: the broker redelivers what was not acknowledged.
        with contextlib.suppress(pika.exceptions.AMQPError, AttributeError, ValueError):
            conn.add_callback_threadsafe(fn)

    # --- the consumer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        index = 0
        logged: str | None = None
        while not self._stop.is_set():
            url = self._urls[index % len(self._urls)]
            try:
                self._consume(url)
                logged = None
            except (pika.exceptions.AMQPError, OSError) as exc:
                if logged != url:
                    log.warning(
                        "AMQP node %s unavailable (%s); trying the next",
                        _safe(url),
                        exc or type(exc).__name__,
                    )
                    logged = url
            finally:
                self.connected.clear()
                self._close()
            index += 1
            if not self._stop.is_set():
                self._stop.wait(RETRY_S if index % len(self._urls) == 0 else 0.05)

    def _consume(self, url: str) -> None:
        params = pika.URLParameters(url)
        params.heartbeat = 30
        params.connection_attempts = 1
        params.socket_timeout = 5
        self._conn = pika.BlockingConnection(params)
        channel = self._declare(self._conn)
        for key in BINDINGS:
            channel.queue_bind(QUEUE, EXCHANGE, routing_key=key)
        channel.basic_qos(prefetch_count=self._prefetch)
        self._generation += 1
        self._channel = channel
        generation = self._generation

        def deliver(_ch: Any, method: Any, _props: Any, body: bytes) -> None:
            self._accept(topic_of(method.routing_key), body, generation, method.delivery_tag, 1)

        if not self._paused.is_set():
            self._tag = channel.basic_consume(QUEUE, deliver, auto_ack=False)
        self.node_url = url
        self.connects += 1
        self.connected.set()
        log.info("consuming device messages from %s", _safe(url))
        while not self._stop.is_set():
            self._conn.process_data_events(time_limit=0.2)

    def _declare(self, conn: Any) -> Any:
        """A channel with the queue declared. A queue left by an earlier version with other arguments
        (single active consumer) is used as it is, with one warning: the broker refuses to change them."""
        channel = conn.channel()
        try:
            channel.queue_declare(QUEUE, durable=True, arguments=QUEUE_ARGUMENTS)
            return channel
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 406:  # PRECONDITION_FAILED: the queue exists with other arguments
                raise
        if not self.old_queue:
            log.warning(
                "queue %s exists with other arguments (an earlier version's single active consumer): "
                "replicas take turns on it; delete it while no replica runs to let all consume",
                QUEUE,
            )
        self.old_queue = True
        channel = conn.channel()
        channel.queue_declare(QUEUE, passive=True)
        return channel

    def _cancel(self) -> None:
        if self._channel is not None and self._tag is not None:
            self._channel.basic_cancel(self._tag)
            self._tag = None

    def _close(self) -> None:
        conn, self._conn, self._channel, self._tag = self._conn, None, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                conn.close()


def _safe(url: str) -> str:
    """A URL for logs, without its password."""
    params = pika.URLParameters(url)
    return f"{params.host}:{params.port}"
