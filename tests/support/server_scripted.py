"""A scripted device for server tests: it speaks the device side of PROTOCOL section 4 through a
`send(topic, payload) -> replies` function (the in-process message handler or a real MQTT client),
fetches packages chunk by chunk, checks them like a runtime would (size, model digest), and follows
a script: succeed, fail with an error code, or hang."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.paths import SHARED_MODELS
from tinyfleet.server.services.messages import decode_chunk
from tinyfleet.signing import delta
from tinyfleet.signing.keys import TrustStore
from tinyfleet.signing.package import verify_package

Send = Callable[[str, bytes], list[Any]]


@functools.cache
def shared_model_blobs() -> dict[str, bytes]:
    """The shared .tflite files by SHA-256: what a scripted device whose slot was set up by digest holds."""
    files = sorted(SHARED_MODELS.rglob("*.tflite")) if SHARED_MODELS.is_dir() else []
    return {hashlib.sha256(data).hexdigest(): data for data in (f.read_bytes() for f in files)}


@dataclass
class ScriptedDevice:
    device_id: str
    hardware_class: int
    send: Send
    trust: TrustStore
    slots: list[str | None] = field(default_factory=lambda: [None, None])
    active: int | None = None
    seqs: list[int] = field(default_factory=lambda: [0, 0])  # manifest sequence per slot
    behaviour: str = "ok"  # ok | fail | hang
    fail_code: int = 42
    chunk_requests: int = 0
    max_chunk_seen: int = 0
    done_actions: set[str] = field(default_factory=set)
    models: dict[str, bytes] = field(default_factory=dict)  # model bytes by digest, when known (deltas)
    encodings: list[int] = field(default_factory=list)  # payload_encoding of every package fetched

    def topic(self, kind: str) -> str:
        return f"tf/{self.device_id}/{kind}"

    def publish(self, kind: str, obj: Any) -> list[Any]:
        return self.send(self.topic(kind), json.dumps(obj).encode())

    def active_sha(self) -> str | None:
        return None if self.active is None else self.slots[self.active]

    def reported(self) -> dict[str, Any]:
        return {
            "runtime_version": 0x000100,
            "hardware_class": self.hardware_class,
            "phase": "idle",
            "active_slot": self.active,
            "security_floor": 0,
            "download_offset": 0,
            "last_error": 0,
            "slots": [
                {
                    "valid": sha is not None,
                    "model_name": "m",
                    "version": "1.0.0",
                    "model_sha256": sha or "",
                    "sequence": seq,
                }
                for sha, seq in zip(self.slots, self.seqs, strict=True)
            ],
        }

    def come_online(self) -> None:
        self.publish("presence", {"online": True})
        self.publish("reported", self.reported())

    def status(self, action_id: str, state: str, code: int = 0, error: str = "") -> None:
        self.publish(
            "status",
            {
                "action_id": action_id,
                "state": state,
                "error_code": code,
                "error": error,
                "offset": 0,
                "bytes_received": 0,
            },
        )

    def fetch(self, package_id: str, size: int, chunk_size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            replies = self.publish(
                "chunk/req", {"package_id": package_id, "offset": len(data), "length": chunk_size}
            )
            self.chunk_requests += 1
            assert len(replies) == 1, "one chunk per request"
            ident, offset, total, piece = decode_chunk(replies[0].payload)
            assert (ident, offset, total) == (package_id, len(data), size)
            assert piece, "empty chunk: the server refused the request"
            self.max_chunk_seen = max(self.max_chunk_seen, len(piece))
            data += piece
        return bytes(data)

    def decode(self, encoding: int, base_sha256: str, payload: bytes) -> bytes | None:
        """The model a payload carries (PROTOCOL section 5); None for a delta whose base is not the
        active model (or whose bytes this scripted device does not hold)."""
        if encoding == 0:
            return payload
        if encoding == 1:
            return delta.decode(payload)
        if base_sha256 != self.active_sha():
            return None
        base = self.models.get(base_sha256) or shared_model_blobs().get(base_sha256)
        return None if base is None else delta.decode(payload, base)

    def follow(self, desired: dict[str, Any] | None) -> None:
        """Act on the desired state once (idempotent for an action already handled)."""
        if not desired or desired.get("operation") == "none":
            return
        # An action is done per package: after a refused delta the same action comes back with the raw one.
        handled = f"{desired['action_id']}:{desired.get('package_id')}"
        if handled in self.done_actions:
            return
        action = desired["action_id"]
        if self.behaviour == "hang":
            self.status(action, "downloading")
            self.done_actions.add(handled)
            return
        self.done_actions.add(handled)
        if desired["operation"] == "revert":
            other = 1 - (self.active or 0)
            if self.active_sha() == desired["model_sha256"]:
                self.status(action, "confirmed")
            elif self.slots[other] == desired["model_sha256"]:
                self.active = other
                self.publish("reported", self.reported())
                self.status(action, "confirmed")
            else:
                self.status(action, "failed", 41, "no previous model")
            return
        if self.active_sha() == desired["model_sha256"]:
            self.status(action, "confirmed")
            return
        self.status(action, "downloading")
        package = self.fetch(desired["package_id"], desired["package_size"], desired["chunk_size"])
        verified = verify_package(package, self.trust)
        self.encodings.append(verified.manifest.payload_encoding)
        model = self.decode(
            verified.manifest.payload_encoding, verified.manifest.delta_base_sha256.hex(), verified.payload
        )
        if model is None:
            self.status(action, "failed", 38, "WRONG_BASE: delta base is not the active model")
            return
        assert hashlib.sha256(model).hexdigest() == desired["model_sha256"]
        self.models[desired["model_sha256"]] = model
        self.status(action, "verifying")
        if self.active is not None and verified.manifest.sequence <= self.seqs[self.active]:
            self.status(action, "failed", 35, "REPLAYED: sequence not above the active model's")
            return
        if self.behaviour == "fail":
            self.status(action, "failed", self.fail_code, "self-test output differs")
            return
        target = 0 if self.active is None else 1 - self.active
        self.slots[target] = desired["model_sha256"]
        self.seqs[target] = verified.manifest.sequence
        self.active = target
        self.status(action, "trial")
        self.publish("reported", self.reported())
        self.status(action, "confirmed")


class MqttLink:
    """A device's MQTT connection (paho 2, MQTT v5) with a retained last will on its presence topic.
    `send` publishes; for a chunk request it waits for the reply, so ScriptedDevice runs unchanged."""

    def __init__(
        self, host: str, port: int, device_id: str, username: str | None = None, password: str | None = None
    ) -> None:
        import queue
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.device_id = device_id
        self.chunks: queue.Queue[bytes] = queue.Queue()
        self.desired: dict[str, Any] | None = None
        self.desired_count = 0
        self.connected = threading.Event()
        self.refused: str | None = None
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.will_set(f"tf/{device_id}/presence", b'{"online": false}', qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            return
        client.subscribe([(f"tf/{self.device_id}/desired", 1), (f"tf/{self.device_id}/chunk", 1)])
        self.connected.set()

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if msg.topic.endswith("/chunk"):
            self.chunks.put(bytes(msg.payload))
        else:
            self.desired = json.loads(msg.payload)
            self.desired_count += 1

    def send(self, topic: str, payload: bytes) -> list[Any]:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)
        if topic.endswith("/chunk/req"):
            from tinyfleet.server.services.messages import Outgoing

            return [Outgoing(topic, self.chunks.get(timeout=10))]
        return []

    def drop_with_will(self) -> None:
        """End the connection so that the broker publishes the last will (MQTT v5 reason code 4)."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.reasoncodes import ReasonCode

        self.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
