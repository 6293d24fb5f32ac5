"""Device traffic from a RabbitMQ cluster over AMQP 0-9-1 (issue 16, docs/DEPLOY.md "Broker cluster").

RabbitMQ 3.10's MQTT plugin has no shared subscriptions, so server replicas cannot split device traffic
through MQTT. Instead every replica consumes from ONE durable quorum queue (replicated on the cluster's
nodes, so it survives losing a node) bound to the MQTT exchange for what devices publish, so each message
is handled by one replica; the queue has a single active consumer (QUEUE_ARGUMENTS: why). MQTT topic
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
logging.getLogger("pika").setLevel(logging.WARNING)  # it logs every connection step at INFO

QUEUE = "tinyfleet.device-messages"
EXCHANGE = "amq.topic"
# What devices publish (PROTOCOL.md 4), as routing keys: MQTT "/" is AMQP ".".
BINDINGS = ("tf.*.reported", "tf.*.presence", "tf.*.status", "tf.*.telemetry", "tf.*.chunk.req")
RETRY_S = 1.0
# Single active consumer: the broker delivers to one replica at a time and moves to the next consumer at
# once when that one's connection dies (its unacknowledged messages are redelivered). Plain competing
# consumers reorder a device's messages across replicas: measured in the cluster demo, a last will
# {"online": false} handled after the device's newer {"online": true} left 2 of 500 devices offline in the
# server's view for good. One consumer keeps each device's messages in order (docs/DEPLOY.md).
QUEUE_ARGUMENTS = {"x-queue-type": "quorum", "x-single-active-consumer": True}

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
        channel = self._conn.channel()
        channel.queue_declare(QUEUE, durable=True, arguments=QUEUE_ARGUMENTS)
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
