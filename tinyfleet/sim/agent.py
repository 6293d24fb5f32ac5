"""One simulated device: MQTT (docs/PROTOCOL.md section 4) on one side, the real C runtime on the other.

The agent is only a courier. Every decision about a package (signature, policy, offsets, digests, slots,
self-test, revert) is taken by the C runtime behind `RuntimeDriver`, which speaks the frame protocol to
the host library; the agent moves bytes between the broker and the runtime and reports what the runtime
says, error codes included.

Concurrency: an agent runs on an asyncio loop and never blocks it. Its paho client is driven by the loop
(socket readers/writers registered through paho's external-loop callbacks), so one process holds
hundreds of agents without a thread each; see tinyfleet/sim/fleet.py.

This module is the device's MQTT session (connection, presence, churn, telemetry, reports); what it does
with a desired state, from the first chunk request to the confirmed install or the revert, is the state
machine in tinyfleet/sim/agent_install.py, which `DeviceAgent` inherits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tinyfleet.device import frames
from tinyfleet.device.engine_check import ENGINE_BUILTIN_OPS
from tinyfleet.device.frames import Q16_ONE, ModelTelemetry
from tinyfleet.device.runtime import TensorSpec
from tinyfleet.sim import sensors
from tinyfleet.sim.agent_install import (  # the names this module always had
    CHUNK_ERROR_FORMAT,
    CHUNK_FORMAT,
    AgentStats,
    InstallMachine,
    parse_chunk,
    parse_desired,
)
from tinyfleet.sim.device_tls import device_tls_context
from tinyfleet.sim.profiles import DeviceProfile
from tinyfleet.sim.runtime_driver import RuntimeDriver, RuntimeFailure

log = logging.getLogger(__name__)

__all__ = [
    "CHUNK_ERROR_FORMAT",
    "CHUNK_FORMAT",
    "MAX_INFERENCES_PER_REPORT",
    "MQTT_PROTOCOLS",
    "AgentConfig",
    "AgentStats",
    "DeviceAgent",
    "parse_chunk",
    "parse_desired",
    "telemetry_report",
]

MISC_PERIOD_S = 1.0
MAX_INFERENCES_PER_REPORT = 5  # bounds the simulator's CPU per device; the count reported is the real one


@dataclass
class AgentConfig:
    device_id: str
    broker_host: str
    broker_port: int
    username: str | None = None
    password: str | None = None
    keepalive: int = 30
    seed: int = 0
    # Certificate identity (PEM): with these the device connects over TLS and logs in with its certificate.
    cert_pem: str | None = None
    key_pem: str | None = None
    ca_pem: str | None = None
    # "3.1.1" (the default: what most MCU MQTT stacks speak) or "5"; PROTOCOL.md 4.6 says what each needs.
    mqtt_protocol: str = "3.1.1"
    # Other brokers of a cluster, tried in turn when the current one cannot be reached (host, port).
    alternates: tuple[tuple[str, int], ...] = ()
    # QoS of the desired/chunk subscriptions. 0 on a RabbitMQ 3.10 cluster: its QoS 1 subscriptions are
    # durable queues on the node the device joined, unusable from any other node while that one is down
    # (PROTOCOL.md 4.6; the protocol recovers a lost message: desired is republished when the device
    # comes online, a chunk is asked for again).
    subscribe_qos: int = 1


MQTT_PROTOCOLS = {"3.1.1": mqtt.MQTTv311, "5": mqtt.MQTTv5}


def _read_ready(client: mqtt.Client, sock: Any) -> None:
    """Read what the socket has. Over TLS, records already decrypted into the SSL object make the socket
    look idle to the event loop (paho reads one packet per call): drain them, or they wait for the next
    bytes to arrive and the device stalls."""
    client.loop_read()
    pending = getattr(sock, "pending", None)
    while pending is not None and client.socket() is sock and pending() > 0:
        if client.loop_read() != mqtt.MQTT_ERR_SUCCESS:
            break


class DeviceAgent(InstallMachine):
    """One device. Create it on a running asyncio loop, then `start()`; `stop()` disconnects cleanly."""

    def __init__(
        self,
        config: AgentConfig,
        profile: DeviceProfile,
        driver: RuntimeDriver,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[str, DeviceAgent], None] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.profile = profile
        self.driver = driver
        self.loop = loop
        self.stats = AgentStats()
        self.rng = random.Random(config.seed)
        self._jitter = random.Random(config.seed + 1)  # its own stream: faults stay as seeded
        self._born = time.monotonic()  # the profile's input drift runs from the agent's start
        self._on_event = on_event
        self._topic = f"tf/{config.device_id}"
        self._churn_timer: asyncio.TimerHandle | None = None
        self._telemetry_timer: asyncio.TimerHandle | None = None
        # (driver boot count, runtime telemetry) at the previous report
        self._last_telemetry: tuple[int, ModelTelemetry] | None = None
        # PROTOCOL 4.5 boot and seq: the server stores a redelivered report once. A random boot id (not
        # the seeded rng: a restarted agent must not repeat an earlier run's) and a seq that keeps rising
        # across reconnects for as long as this agent runs.
        self._telemetry_boot = secrets.randbits(32)
        self._telemetry_seq = 0
        self._reported_seq = 0
        # PROTOCOL 4.6 "Presence order": each connection's number in this boot, in its online and its will.
        self._presence_seq = 0
        self._model_io: dict[str, tuple[TensorSpec, TensorSpec] | None] = {}  # model sha -> its tensors
        self._running = False
        self._connected = False
        self._away_seconds: float | None = None
        self._fresh_client = False
        self._capabilities: dict[str, Any] | None = None
        self._tls: ssl.SSLContext | None = None
        if config.mqtt_protocol not in MQTT_PROTOCOLS:
            raise ValueError(f"MQTT protocol must be one of {', '.join(MQTT_PROTOCOLS)}")
        self._brokers = [(config.broker_host, config.broker_port), *config.alternates]
        self._broker_index = 0
        self.client = self._make_client()

    # ----- MQTT plumbing on the asyncio loop -------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.device_id,
            protocol=MQTT_PROTOCOLS[self.config.mqtt_protocol],
            reconnect_on_failure=False,
        )
        if self.config.username and self.config.cert_pem is None:
            c.username_pw_set(self.config.username, self.config.password)
        if self.config.cert_pem is not None and self.config.key_pem and self.config.ca_pem:
            if self._tls is None:  # made once: a reconnecting device keeps its context
                self._tls = device_tls_context(self.config.cert_pem, self.config.key_pem, self.config.ca_pem)
            c.tls_set_context(self._tls)
        c.will_set(f"{self._topic}/presence", self._presence(False), qos=1, retain=True)
        c.max_inflight_messages_set(50)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        return c

    def _on_socket_open(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.add_reader(sock, self._safe(lambda: _read_ready(client, sock)))
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)

    def _on_socket_close(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.remove_reader(sock)
        self.loop.remove_writer(sock)

    def _on_register_write(self, client: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.add_writer(sock, self._safe(client.loop_write))

    def _on_unregister_write(self, _c: mqtt.Client, _u: Any, sock: Any) -> None:
        self.loop.remove_writer(sock)

    def _safe(self, fn: Callable[[], Any]) -> Callable[[], None]:
        """Loop callbacks must never raise into asyncio: log and count instead."""

        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("%s: network loop error", self.config.device_id)

        return run

    def misc(self) -> None:
        """Keepalive and retries; the fleet calls it about once a second for every agent."""
        if self._connected:
            self.client.loop_misc()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def device_id(self) -> str:
        return self.config.device_id

    def start(self) -> None:
        if self.profile.faults.dead:
            return  # a dead device never shows up
        self._running = True
        self._connect()
        self._schedule_churn()
        self._schedule_telemetry(first=True)

    @property
    def broker(self) -> tuple[str, int]:
        """The broker this device connects to now."""
        return self._brokers[self._broker_index]

    def _presence(self, online: bool) -> str:
        return json.dumps({"online": online, "boot": self._telemetry_boot, "seq": self._presence_seq})

    def _next_connection(self) -> None:
        """Right before each (re)connect: a new connection number, and the will that carries it."""
        self._presence_seq += 1
        self.client.will_set(f"{self._topic}/presence", self._presence(False), qos=1, retain=True)

    def _connect(self) -> None:
        if not self._running:
            return
        try:
            host, port = self.broker
            self._next_connection()
            self.client.connect(host, port, self.config.keepalive)
        except OSError as exc:
            log.info("%s: connect failed (%s), retrying", self.config.device_id, exc)
            self._next_broker()
            self._later(1.0 + self.rng.random(), self._connect)

    def _next_broker(self) -> None:
        """The current broker is unreachable: the next one of the cluster gets the next attempt."""
        if len(self._brokers) > 1:
            self._broker_index = (self._broker_index + 1) % len(self._brokers)

    def stop(self) -> None:
        """Go offline cleanly (presence false, then disconnect)."""
        self._running = False
        self._cancel_timers()
        if self._connected:
            # The broker publishes our retained presence=false (the last will) itself. A separate publish
            # right before DISCONNECT could still be unacknowledged, and paho would re-send it after the
            # next connect, marking a device that is back online as offline.
            if self.config.mqtt_protocol == "5":
                self.client.disconnect(
                    reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
                )
            else:
                # MQTT 3.1.1 has no "disconnect with will": a DISCONNECT discards the will. Closing the
                # connection without one makes every 3.1.1 broker publish it.
                self._close_without_disconnect()
        self._connected = False

    def _close_without_disconnect(self) -> None:
        sock = self.client.socket()
        if sock is None:
            return
        with contextlib.suppress(OSError, AttributeError):
            sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            self.client.loop_read()  # sees the closed socket now: paho closes it and calls on_disconnect

    def drop_connection(self, away_seconds: float | None = None) -> None:
        """Vanish abruptly (no DISCONNECT, so the broker publishes the last will); come back after
        away_seconds (default: the usual reconnect back-off). The loop's reader sees the closed socket."""
        self._away_seconds = away_seconds
        sock = self.client.socket()
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]

    def _later(self, delay: float, fn: Callable[[], None]) -> asyncio.TimerHandle:
        def run() -> None:
            try:
                fn()
            except Exception:
                log.exception("%s: scheduled step failed", self.config.device_id)

        return self.loop.call_later(max(0.0, delay), run)

    def _cancel_timers(self) -> None:
        for timer in (self._chunk_timer, self._churn_timer, self._telemetry_timer):
            if timer is not None:
                timer.cancel()
        self._chunk_timer = self._churn_timer = self._telemetry_timer = None

    def _on_connect(
        self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        if client is not self.client:
            return  # a client discarded by a power cycle
        if reason.is_failure:
            log.warning("%s: broker refused the connection: %s", self.config.device_id, reason)
            self._emit("refused")
            # On a cluster the next attempt goes to the next node: one node can refuse on its own for
            # minutes (seen: "Server unavailable" from 1 of 3 RabbitMQ nodes on a loaded machine).
            self._next_broker()
            return
        self._connected = True
        qos = self.config.subscribe_qos
        client.subscribe([(f"{self._topic}/desired", qos), (f"{self._topic}/chunk", qos)])
        client.publish(f"{self._topic}/presence", self._presence(True), qos=1, retain=True)
        self.publish_reported()
        self._emit("online")
        # The retained desired state arrives again after the subscription: that resumes any action.
        if len(self._brokers) > 1:
            # On a cluster it may not (retained messages stay on the node that held them, PROTOCOL.md
            # 4.6): an unfinished download resumes by itself; the server's republish changes nothing.
            action = self._action
            if action is not None and not action.done and action.operation == "install":
                self._request_chunk()

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if client is not self.client:
            return
        was = self._connected
        self._connected = False
        if self._chunk_timer is not None:
            self._chunk_timer.cancel()
            self._chunk_timer = None
        if was:
            self._emit("offline")
        if self._running:
            self.stats.reconnects += 1
            away, self._away_seconds = self._away_seconds, None
            self._later(away if away is not None else 0.5 + self.rng.random(), self._reconnect)

    def _reconnect(self) -> None:
        if not self._running or self._connected:
            return
        if self._fresh_client:
            # After a power cut the device's RAM, including paho's unacknowledged messages, is gone.
            self._fresh_client = False
            self.client = self._make_client()
            self._connect()
            return
        try:
            self._next_connection()
            if len(self._brokers) > 1:
                self._connect_current()
            else:
                self.client.reconnect()
        except OSError:
            self._next_broker()
            self._later(1.0 + self.rng.random() * 2, self._reconnect)

    def _connect_current(self) -> None:
        host, port = self.broker
        self.client.connect(host, port, self.config.keepalive)

    def _emit(self, event: str) -> None:
        if self._on_event is not None:
            self._on_event(event, self)

    def _publish(self, sub: str, doc: dict[str, Any], retain: bool = False) -> None:
        if self._connected:
            self.client.publish(
                f"{self._topic}/{sub}", json.dumps(doc, separators=(",", ":")), qos=1, retain=retain
            )

    # ----- incoming messages ------------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if client is not self.client:
            return
        try:
            if msg.topic.endswith("/chunk"):
                self._on_chunk(bytes(msg.payload))
            elif msg.topic.endswith("/desired"):
                self._on_desired(bytes(msg.payload))
        except ValueError as exc:
            self.stats.malformed += 1
            log.info("%s: ignored malformed message on %s: %s", self.config.device_id, msg.topic, exc)

    # ----- faults -----------------------------------------------------------------------------------------

    def _power_cycle(self) -> None:
        """Power was cut: the device vanishes, reboots its runtime and comes back to resume."""
        self.stats.power_cuts += 1
        self._known_state = None
        self._cancel_chunk_timer()
        self._action = None  # RAM is gone; the retained desired state tells us again what to do
        self.driver.power_on_and_boot()
        self._fresh_client = True
        self.drop_connection(0.2 + self.rng.random() * 0.5)
        self._emit("power_cut")

    def _schedule_churn(self) -> None:
        rate = self.profile.faults.churn_per_second
        if not rate or not self._running:
            return
        self._churn_timer = self._later(self.rng.expovariate(rate), self._churn)

    def _churn(self) -> None:
        if not self._running:
            return
        if self._connected:
            self.drop_connection(self.profile.faults.offline_seconds)
        self._schedule_churn()

    # ----- telemetry --------------------------------------------------------------------------------------

    def _schedule_telemetry(self, first: bool = False) -> None:
        period = self.profile.telemetry_period_s
        if not self._running or period <= 0 or self.profile.inference_hz <= 0:
            return
        delay = period * (self.rng.random() if first else 1.0)  # spread the fleet's reports over time
        self._telemetry_timer = self._later(delay, self._telemetry_tick)

    def _telemetry_tick(self) -> None:
        self._schedule_telemetry()
        if not self._connected or self._action_in_progress():
            return
        report = self.run_inferences()
        if report is not None:
            report["boot"], report["seq"] = self._telemetry_boot, self._telemetry_seq
            self._telemetry_seq += 1
            self._publish("telemetry", {"reports": [report]})

    def _action_in_progress(self) -> bool:
        return self._action is not None and not self._action.done

    def run_inferences(self) -> dict[str, Any] | None:
        """Run the period's inferences on the runtime (sensor data for the model), then report what the
        runtime's own telemetry (PROTOCOL 3.2.6) counted since the previous report as one report (4.5);
        None without an active model. On the host library the latency is the runtime's estimate from the
        model's operation count and the profile's clock, flagged `latency_estimated`."""
        state = self._known_state or self._state()
        sha = state.active_model_sha256()
        if sha is None or state.phase != "idle":
            return None
        count = max(
            1,
            min(
                MAX_INFERENCES_PER_REPORT, round(self.profile.inference_hz * self.profile.telemetry_period_s)
            ),
        )
        for _ in range(count):
            self._infer_once(sha)
        try:
            now = self.driver.telemetry().model
        except RuntimeFailure:
            return None
        if now.model_sha256 != sha:
            return None
        boots, prev = self._last_telemetry or (0, None)
        if boots != self.driver.boots or prev is None or prev.model_sha256 != now.model_sha256:
            prev = None  # a new model or a reboot: the runtime's counters started over
        self._last_telemetry = (self.driver.boots, now)
        return telemetry_report(now, prev)

    def _infer_once(self, sha: str) -> None:
        """One inference on sensor data shaped for the active model (tinyfleet/sim/sensors.py: windows
        from the process's pool, the inference itself real). A failure needs no handling here: the
        runtime counts it in its telemetry."""
        if sha not in self._model_io:
            self._model_io[sha] = self.driver.model_io()
        io = self._model_io[sha]
        elapsed = time.monotonic() - self._born
        data = (
            sensors.pooled_input(io[0], io[1], self.rng, self.profile.inputs, elapsed)
            if io is not None
            else bytes(1)
        )
        with contextlib.suppress(RuntimeFailure):
            self.driver.infer(data)

    # ----- reports ----------------------------------------------------------------------------------------

    def capabilities(self) -> dict[str, Any] | None:
        """What the server needs to predict refusals (PROTOCOL 4.2 `capabilities`): the runtime's HELLO
        (slot size, RAM budget, whether an engine runs models) and the profile's flash sector size; None
        if the runtime does not answer HELLO (the report then goes without, like an older device's)."""
        if self._capabilities is None:
            try:
                answer = self.driver.transport.request(frames.hello()).raise_for_error()
                hello = frames.parse_hello(answer.payload)
            except (frames.ProtocolError, frames.DeviceError) as exc:
                log.warning("%s: no capabilities reported (HELLO: %s)", self.device_id, exc)
                return None
            self._capabilities = {
                "slot_size": hello.slot_size,
                "sector_size": self.profile.sector_size,
                "ram_budget": hello.ram_budget,
                "engine": hello.has_inference,
                # The engine's builtin operators; a runtime without one installs any model, untested.
                "ops": list(ENGINE_BUILTIN_OPS) if hello.has_inference else None,
                "payload_decoder": True,  # both the host library and the firmware give it a workspace
                # A host-library device given its X25519 key at provisioning decrypts (PROTOCOL 6).
                "encryption": self.driver.can_decrypt,
            }
        return self._capabilities

    def publish_reported(self) -> None:
        reported = self._state().reported()
        caps = self.capabilities()
        if caps is not None:
            reported["capabilities"] = caps
        # PROTOCOL 4.2 boot and seq: server replicas may handle two reported states out of order.
        reported["boot"], reported["seq"] = self._telemetry_boot, self._reported_seq
        self._reported_seq += 1
        self._publish("reported", reported, retain=True)

    def snapshot(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "connected": self._connected,
            "ts": time.time(),
            **self.stats.__dict__,
        }


def telemetry_report(now: ModelTelemetry, prev: ModelTelemetry | None) -> dict[str, Any]:
    """PROTOCOL 4.5 report of what the runtime counted between two TELEMETRY readings of the same model
    (prev None: since the model became active). Every field comes from the runtime's counters."""

    def delta(a: int, b: int) -> int:
        return a - b if prev is not None else a

    p = prev
    inferences = delta(now.inferences, p.inferences if p else 0)
    classified = delta(now.classified, p.classified if p else 0)
    cycles = delta(now.cycles_total, p.cycles_total if p else 0)
    confidence = delta(now.confidence_q16_total, p.confidence_q16_total if p else 0)
    histogram = [n - (p.histogram[i] if p else 0) for i, n in enumerate(now.histogram)]
    while histogram and histogram[-1] == 0:
        histogram.pop()  # trailing empty classes carry no information
    latency = cycles / inferences * 1e6 / now.cpu_hz if inferences and now.cpu_hz else 0.0
    return {
        "ts": time.time(),
        "model_sha256": now.model_sha256,
        "inference_count": inferences,
        "latency_us_mean": latency,
        "latency_estimated": now.latency_estimated,
        "class_histogram": histogram,
        "confidence_mean": confidence / Q16_ONE / classified if classified else 0.0,
        "errors": delta(now.errors, p.errors if p else 0),
        "arena_bytes": now.arena_bytes,
    }
