#!/usr/bin/env python3
"""A minimal tinyfleet device, written from docs/PROTOCOL.md alone (it imports nothing from tinyfleet).

What it is: the MQTT side of a device (PROTOCOL section 4) and the package checks of section 1.1, with a
"flash" made of files: `slot0.bin` and `slot1.bin` (each the 292 manifest bytes, 12 unused bytes, then the
model at offset 304, as in 1.4) and `state.json` in the state directory. It has no inference engine and
no payload decoder, and says so in its capabilities (4.2), so the server sends it raw packages
(`payload_encoding` 0) and it confirms a trial after the integrity check alone (4.4).

    python device.py --provisioning answer.json --state-dir ./flash

`answer.json` is the body of the 201 answer of `POST /api/devices` (4.6). Needs paho-mqtt 2 and
cryptography. Stop it with SIGTERM or Ctrl-C: it says `{"online": false}` before it leaves.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion

log = logging.getLogger("reference_device")

# 4.6: server-signed packages require runtime 0.1.0 by default; we report exactly that.
RUNTIME_VERSION = (0 << 16) | (1 << 8) | 0
MANIFEST_SIZE = 292
SIGNED_BYTES = 228  # the signature covers bytes 0..227 (1.1)
SLOT_SIZE = 1 << 20  # a slot holds the manifest, 12 unused bytes and the model at offset 304 (1.4)
SLOT_MODEL_OFFSET = 304
RAM_BUDGET = 256 * 1024
SECTOR_SIZE = 4096
CHUNK_TIMEOUT_S = 2.0  # first re-ask; doubles per retry up to 16 s (4.3: re-ask after a timeout)
STATUS_EVERY_CHUNKS = 16  # also how often download progress is saved for a resume after a restart
# Deliberate defects (--fault), to show that the conformance kit catches them; never in a real device.
FAULTS = ("accept-bad-signature", "no-reask", "no-resume", "ignore-arena")
ACTIVE_FAULTS: set[str] = set()

# Section 2 error codes this device can report.
CODES = {
    1: "TRUNCATED",
    2: "BAD_MAGIC",
    3: "UNSUPPORTED_FORMAT",
    4: "UNKNOWN_KEY",
    5: "BAD_SIGNATURE",
    6: "DIGEST_MISMATCH",
    7: "SIZE_MISMATCH",
    8: "FIELD_RANGE",
    32: "WRONG_HARDWARE",
    33: "RUNTIME_TOO_OLD",
    34: "ROLLBACK_REFUSED",
    35: "REPLAYED",
    36: "TOO_LARGE",
    37: "ARENA_TOO_LARGE",
    39: "BAD_STATE",
    40: "BAD_OFFSET",
    41: "NO_PREVIOUS",
    100: "BAD_MESSAGE",
}
TRUNCATED, BAD_MAGIC, UNSUPPORTED_FORMAT, UNKNOWN_KEY, BAD_SIGNATURE = 1, 2, 3, 4, 5
DIGEST_MISMATCH, SIZE_MISMATCH, FIELD_RANGE = 6, 7, 8
WRONG_HARDWARE, RUNTIME_TOO_OLD, ROLLBACK_REFUSED, REPLAYED, TOO_LARGE, ARENA_TOO_LARGE = (
    32,
    33,
    34,
    35,
    36,
    37,
)
BAD_OFFSET, NO_PREVIOUS = 40, 41

# 1.1: the manifest, little-endian.
_MANIFEST = struct.Struct("<4sHH32sHHHHIIIIBBHI32sI32s32sII32sQ8s64s")
assert _MANIFEST.size == MANIFEST_SIZE


class Refused(Exception):
    """A package or command the device refuses, with its section 2 code."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(detail or CODES.get(code, str(code)))
        self.code = code


@dataclass(frozen=True)
class Manifest:
    raw: bytes
    model_name: str
    version: str
    sequence: int
    security_counter: int
    hardware_class: int
    min_runtime_version: int
    payload_encoding: int
    payload_size: int
    payload_sha256: bytes
    model_size: int
    model_sha256: bytes
    arena_bytes: int
    key_id: bytes


def parse_manifest(raw: bytes, trust: dict[bytes, Ed25519PublicKey]) -> Manifest:
    """The checks of 1.1 up to the field ranges, in their order; Refused with the code of the first that
    fails. The signature is checked before any field is trusted."""
    if len(raw) < 8:
        raise Refused(TRUNCATED)
    if raw[:4] != b"TFMF":
        raise Refused(BAD_MAGIC)
    format_version, header_size = struct.unpack_from("<HH", raw, 4)
    if format_version != 1 or header_size != MANIFEST_SIZE:
        raise Refused(UNSUPPORTED_FORMAT)
    if len(raw) < MANIFEST_SIZE:
        raise Refused(TRUNCATED)
    raw = bytes(raw[:MANIFEST_SIZE])
    f = _MANIFEST.unpack(raw)
    (_, _, _, name, major, minor, patch, reserved0, sequence, counter, hw, min_rt, encoding, flags) = f[:14]
    (reserved1, payload_size, payload_sha, model_size, model_sha, base_sha, arena, seed, st_sha) = f[14:23]
    key_id, signature = f[24], f[25]
    key = trust.get(key_id)
    if key is None:
        raise Refused(UNKNOWN_KEY)
    try:
        key.verify(signature, raw[:SIGNED_BYTES])
    except InvalidSignature:
        if "accept-bad-signature" not in ACTIVE_FAULTS:
            raise Refused(BAD_SIGNATURE) from None
    zero = bytes(32)
    name_bytes = name.split(b"\0", 1)[0]
    try:
        model_name = name_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(FIELD_RANGE, "model_name is not UTF-8") from None
    ranges_ok = (
        reserved0 == 0
        and reserved1 == 0
        and flags == 0
        and encoding <= 2
        and 1 <= len(name_bytes) <= 31
        and name[len(name_bytes) :] == bytes(32 - len(name_bytes))
        and 1 <= payload_size <= 2**31
        and 1 <= model_size <= 2**31
        and (base_sha != zero) == (encoding == 2)
        and (seed != 0 or st_sha == zero)
        and (encoding != 0 or (payload_size == model_size and payload_sha == model_sha))
    )
    if not ranges_ok:
        raise Refused(FIELD_RANGE)
    return Manifest(
        raw=raw,
        model_name=model_name,
        version=f"{major}.{minor}.{patch}",
        sequence=sequence,
        security_counter=counter,
        hardware_class=hw,
        min_runtime_version=min_rt,
        payload_encoding=encoding,
        payload_size=payload_size,
        payload_sha256=payload_sha,
        model_size=model_size,
        model_sha256=model_sha,
        arena_bytes=arena,
        key_id=key_id,
    )


def trust_store(entries: list[dict[str, str]]) -> dict[bytes, Ed25519PublicKey]:
    """1.3: key id = SHA-256(public key)[0:8]; an entry whose id does not match its key is left out."""
    store = {}
    for e in entries:
        public = bytes.fromhex(e["public_key"])
        key_id = bytes.fromhex(e["key_id"])
        if hashlib.sha256(public).digest()[:8] == key_id:
            store[key_id] = Ed25519PublicKey.from_public_bytes(public)
    return store


# ----- the file-backed "flash" ----------------------------------------------------------------------------


class Flash:
    """Two slot files and a state file. state.json is replaced atomically (write, fsync, rename), the
    stand-in for the one-record commits of 1.4: a slot is written only while it is not valid."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "state.json"
        fresh = {
            "active_slot": None,
            "phase": "idle",
            "security_floor": 0,
            "last_error": 0,
            "valid": [False, False],
            "trial_from": None,  # the slot active before the trial
            "finished": [],  # [action_id, package_id] pairs already reported as finished
            # the download in progress, saved every few chunks: {key, offset, target, manifest (hex)}
            "download": None,
        }
        self.state: dict[str, Any] = fresh
        if self.path.exists():
            self.state = {**fresh, **json.loads(self.path.read_text())}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def slot_path(self, slot: int) -> Path:
        return self.dir / f"slot{slot}.bin"

    def manifest(self, slot: int, trust: dict[bytes, Ed25519PublicKey]) -> Manifest | None:
        """The slot's manifest, re-authenticated (None when the slot is not valid or fails)."""
        if not self.state["valid"][slot]:
            return None
        try:
            with open(self.slot_path(slot), "rb") as f:
                return parse_manifest(f.read(MANIFEST_SIZE), trust)
        except (OSError, Refused):
            return None

    def model_digest(self, slot: int, size: int) -> bytes:
        h = hashlib.sha256()
        with open(self.slot_path(slot), "rb") as f:
            f.seek(SLOT_MODEL_OFFSET)
            left = size
            while left > 0:
                piece = f.read(min(left, 65536))
                if not piece:
                    break
                h.update(piece)
                left -= len(piece)
        return h.digest()


# ----- one action (4.1) -------------------------------------------------------------------------------------


@dataclass
class Action:
    action_id: str | None
    operation: str
    package_id: str | None
    package_size: int
    model_sha256: str | None
    chunk_size: int
    offset: int = 0  # package offset asked for next
    manifest_bytes: bytearray = field(default_factory=bytearray)
    manifest: Manifest | None = None
    target: int | None = None
    hasher: Any = None
    bytes_received: int = 0
    chunks: int = 0
    done: bool = False
    asked_at: float = 0.0
    retries: int = 0

    @property
    def key(self) -> list[Any]:
        return [self.action_id, self.package_id]


def parse_desired(doc: Any) -> Action:
    if not isinstance(doc, dict) or doc.get("operation") not in ("install", "revert", "none"):
        raise ValueError("desired state: not an object with a known operation")
    op = doc["operation"]
    action_id = doc.get("action_id")
    if op == "none":
        return Action(action_id if isinstance(action_id, str) else None, "none", None, 0, None, 0)
    sha = doc.get("model_sha256")
    if not isinstance(action_id, str) or not isinstance(sha, str) or len(sha) != 64:
        raise ValueError("desired state: action_id and model_sha256 are needed")
    bytes.fromhex(sha)
    if op == "revert":
        return Action(action_id, "revert", None, 0, sha.lower(), 0)
    package_id, size, chunk = doc.get("package_id"), doc.get("package_size"), doc.get("chunk_size")
    if not isinstance(package_id, str) or not package_id or not package_id.isascii() or len(package_id) > 255:
        raise ValueError("desired state: bad package_id")
    if (
        not (isinstance(size, int) and isinstance(chunk, int))
        or isinstance(size, bool)
        or isinstance(chunk, bool)
    ):
        raise ValueError("desired state: package_size and chunk_size must be integers")
    if chunk <= 0 or size <= MANIFEST_SIZE:
        raise ValueError("desired state: chunk_size not positive or package_size below the manifest size")
    return Action(action_id, "install", package_id, size, sha.lower(), chunk)


# ----- the device -------------------------------------------------------------------------------------------


class Device:
    def __init__(self, answer: dict[str, Any], state_dir: Path, host: str | None, port: int | None) -> None:
        self.device_id: str = answer["device"]["id"]
        self.hardware_class: int = answer["device"]["hardware_class"]
        m = answer["mqtt"]
        self.host = host or m.get("host") or "127.0.0.1"
        self.port = int(port or m.get("port") or 1883)
        self.prefix: str = m.get("topic_prefix") or f"tf/{self.device_id}/"
        self.trust = trust_store(answer["trust_store"])
        self.flash = Flash(state_dir)
        self.lock = threading.RLock()
        self.action: Action | None = None
        self.connected = False
        self.telemetry_boot = secrets.randbits(32)  # 4.5: differs from earlier boots
        self.telemetry_seq = 0
        self.presence_seq = 1  # 4.6 "Presence order": the connection's number in this boot
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(m["username"], m["password"])
        if m.get("tls"):
            self.client.tls_set()
        self._arm_will()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._boot()

    def topic(self, kind: str) -> str:
        return self.prefix + kind

    def presence(self, online: bool) -> dict[str, Any]:
        return {"online": online, "boot": self.telemetry_boot, "seq": self.presence_seq}

    def _arm_will(self) -> None:
        """The will of the next connection carries that connection's seq (paho sends it on reconnect)."""
        self.client.will_set(self.topic("presence"), json.dumps(self.presence(False)), qos=1, retain=True)

    def publish(self, kind: str, doc: dict[str, Any], retain: bool = False) -> None:
        self.client.publish(self.topic(kind), json.dumps(doc, separators=(",", ":")), qos=1, retain=retain)

    # --- boot (1.4 "Boot", for files) ---

    def _boot(self) -> None:
        s = self.flash.state
        for slot in (0, 1):
            if s["valid"][slot] and self.flash.manifest(slot, self.trust) is None:
                s["valid"][slot] = False
        if s["phase"] == "trial":
            # A trial cut short by a restart: abandon it as the runtime does after too many trial boots.
            self._abandon_trial()
        resumable = s["phase"] == "downloading" and s["download"] and "no-resume" not in ACTIVE_FAULTS
        if s["phase"] in ("downloading", "downloaded") and not resumable:
            s["phase"], s["download"] = "idle", None  # nothing to resume: a new download starts over
        if s["active_slot"] is not None and not s["valid"][s["active_slot"]]:
            s["active_slot"], s["last_error"] = None, 66  # STATE_CORRUPT
        self.flash.save()

    def _abandon_trial(self) -> None:
        s = self.flash.state
        trial = s["active_slot"]
        if trial is not None:
            s["valid"][trial] = False
        s["active_slot"], s["trial_from"], s["phase"] = s["trial_from"], None, "idle"
        s["last_error"] = 42  # SELFTEST_FAILED

    # --- MQTT connection (4.6) ---

    def run(self, stop: threading.Event, telemetry_period: float) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        next_report = time.monotonic() + telemetry_period
        try:
            while not stop.wait(0.1):
                with self.lock:
                    self._check_chunk_timeout()
                if telemetry_period > 0 and time.monotonic() >= next_report:
                    next_report = time.monotonic() + telemetry_period
                    with self.lock:
                        self._publish_telemetry()
        finally:
            with self.lock:
                self._save_progress()
            if self.connected:
                # A clean shutdown says it is offline itself (4.6), then disconnects.
                self.publish("presence", self.presence(False), retain=True)
                time.sleep(0.2)
                self.client.disconnect()
            self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        with self.lock:
            self.connected = True
            client.subscribe([(self.topic("desired"), 1), (self.topic("chunk"), 1)])
            self.publish("presence", self.presence(True), retain=True)
            self.publish_reported()
            log.info("connected to %s:%s as %s", self.host, self.port, self.device_id)
            # The retained desired state arrives after the subscription and resumes any action.

    def _on_disconnect(self, *_args: Any) -> None:
        self.connected = False
        with self.lock:
            self.presence_seq += 1  # before paho reconnects
            self._arm_will()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            try:
                if msg.topic == self.topic("desired"):
                    if msg.payload:
                        self._on_desired(parse_desired(json.loads(msg.payload)))
                elif msg.topic == self.topic("chunk"):
                    self._on_chunk(bytes(msg.payload))
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("ignored a malformed message on %s: %s", msg.topic, exc)
            except Exception:
                log.exception("error handling a message on %s", msg.topic)

    # --- reports (4.2, 4.4, 4.5) ---

    def capabilities(self) -> dict[str, Any]:
        # No engine, no payload decoder: the server sends raw packages only and predicts nothing about ops.
        return {
            "slot_size": SLOT_SIZE,
            "ram_budget": RAM_BUDGET,
            "sector_size": SECTOR_SIZE,
            "engine": False,
            "ops": None,
            "payload_decoder": False,
        }

    def publish_reported(self) -> None:
        s = self.flash.state
        slots = []
        for slot in (0, 1):
            m = self.flash.manifest(slot, self.trust)
            if m is None:
                slots.append(
                    {"valid": False, "model_name": "", "version": "", "model_sha256": "", "sequence": 0}
                )
            else:
                slots.append(
                    {
                        "valid": True,
                        "model_name": m.model_name,
                        "version": m.version,
                        "model_sha256": m.model_sha256.hex(),
                        "sequence": m.sequence,
                    }
                )
        a = self.action
        downloading = a is not None and not a.done and a.manifest is not None
        self.publish(
            "reported",
            {
                "runtime_version": RUNTIME_VERSION,
                "hardware_class": self.hardware_class,
                "phase": s["phase"],
                "active_slot": s["active_slot"],
                "security_floor": s["security_floor"],
                "download_offset": max(0, a.offset - MANIFEST_SIZE) if downloading and a else 0,
                "last_error": s["last_error"],
                "slots": slots,
                "capabilities": self.capabilities(),
            },
            retain=True,
        )

    def status(self, action: Action, state: str, code: int = 0) -> None:
        if action.action_id is None:
            return
        self.publish(
            "status",
            {
                "action_id": action.action_id,
                "state": state,
                "error_code": code,
                "error": CODES.get(code, "") if code else "",
                "offset": action.offset,
                "bytes_received": action.bytes_received,
            },
        )
        if state in ("confirmed", "failed", "rolled_back"):
            finished = self.flash.state["finished"]
            finished.append(action.key)
            del finished[:-50]
            self.flash.save()
        log.info("action %s: %s%s", action.action_id, state, f" ({CODES.get(code, code)})" if code else "")

    def _publish_telemetry(self) -> None:
        """4.5: one report per period for the active model. This device has no engine, so it ran no
        inference: the counts are honest zeros (a device with an engine fills them from its runtime)."""
        s = self.flash.state
        active = s["active_slot"]
        if not self.connected or active is None or s["phase"] != "idle":
            return
        if self.action is not None and not self.action.done:
            return
        m = self.flash.manifest(active, self.trust)
        if m is None:
            return
        report = {
            "ts": time.time(),
            "model_sha256": m.model_sha256.hex(),
            "inference_count": 0,
            "latency_us_mean": 0.0,
            "latency_estimated": False,
            "class_histogram": [],
            "confidence_mean": 0.0,
            "errors": 0,
            "arena_bytes": 0,
            "boot": self.telemetry_boot,
            "seq": self.telemetry_seq,
        }
        self.telemetry_seq += 1
        self.publish("telemetry", {"reports": [report]})

    # --- desired state (4.1) ---

    def active_sha(self) -> str | None:
        s = self.flash.state
        if s["active_slot"] is None:
            return None
        m = self.flash.manifest(s["active_slot"], self.trust)
        return m.model_sha256.hex() if m else None

    def _on_desired(self, action: Action) -> None:
        current = self.action
        if current is not None and not current.done and current.key == action.key:
            self._ask()  # the same action again (reconnect): go on where we are
            return
        saved = self.flash.state["download"]
        if current is None and saved and saved["key"] != action.key:
            self._drop_saved()  # a download from before a restart that is no longer desired (4.1)
        if current is not None and not current.done:
            self._drop_download(current)  # no longer desired
        self.action = action
        if action.operation == "none":
            action.done = True
            return
        if action.key in self.flash.state["finished"]:
            action.done = True  # reported already; the retained desired state stays as it is
            return
        if action.operation == "revert":
            self._revert(action)
        else:
            self._start_install(action)

    def _fail(self, action: Action, code: int) -> None:
        self._drop_download(action)
        action.done = True
        self.flash.state["last_error"] = code
        self.flash.save()
        self.status(action, "failed", code)
        self.publish_reported()

    def _drop_download(self, action: Action) -> None:
        s = self.flash.state
        if action.target is not None and s["phase"] in ("downloading", "downloaded"):
            s["phase"] = "idle"
            s["valid"][action.target] = False
            s["download"] = None
            self.flash.save()
        action.target = None

    def _drop_saved(self) -> None:
        s = self.flash.state
        if s["download"] and s["phase"] in ("downloading", "downloaded"):
            s["valid"][s["download"]["target"]] = False
            s["phase"] = "idle"
        s["download"] = None
        self.flash.save()

    def _save_progress(self) -> None:
        """Where the download is (4.3: a device resumes by asking for the offset it needs). The slot file
        holds at least the bytes before `offset`; rewriting the same bytes after a resume is harmless."""
        a = self.action
        if a is None or a.done or a.manifest is None or a.target is None:
            return
        if self.flash.state["phase"] != "downloading":
            return
        self.flash.state["download"] = {
            "key": a.key,
            "offset": a.offset,
            "target": a.target,
            "manifest": bytes(a.manifest_bytes[:MANIFEST_SIZE]).hex(),
        }
        self.flash.save()

    def _resume(self, a: Action) -> bool:
        """Take up the download saved before a restart, if it is this action's; re-hash what is stored."""
        s = self.flash.state
        saved = s["download"]
        if not saved or saved["key"] != a.key or s["phase"] != "downloading":
            return False
        try:
            raw = bytes.fromhex(saved["manifest"])
            a.manifest = self._check_policy(parse_manifest(raw, self.trust))
        except (Refused, ValueError):
            self._drop_saved()
            return False
        a.manifest_bytes, a.target, a.offset = bytearray(raw), saved["target"], saved["offset"]
        a.hasher = hashlib.sha256()
        with open(self.flash.slot_path(a.target), "rb") as f:
            f.seek(SLOT_MODEL_OFFSET)
            a.hasher.update(f.read(a.offset - MANIFEST_SIZE))
        log.info("resuming the download of %s at offset %d", a.package_id, a.offset)
        self.status(a, "downloading")
        self.publish_reported()
        self._ask()
        return True

    # --- install ---

    def _start_install(self, action: Action) -> None:
        s = self.flash.state
        if self.active_sha() == action.model_sha256 and s["phase"] == "idle":
            action.done = True
            self.status(action, "confirmed")  # already running it
            return
        if s["phase"] == "trial":
            self._abandon_trial()  # a new install while a trial is open: give the trial up first
            self.flash.save()
        if self._resume(action):
            return
        self.status(action, "downloading")
        self._ask()

    def _ask(self) -> None:
        """Ask for the next chunk: the manifest first on its own, then at most chunk_size bytes."""
        a = self.action
        if a is None or a.done or a.operation != "install" or not self.connected:
            return
        length = min(a.chunk_size, a.package_size - a.offset)
        if a.offset < MANIFEST_SIZE:
            length = min(length, MANIFEST_SIZE - a.offset)
        self.publish("chunk/req", {"package_id": a.package_id, "offset": a.offset, "length": length})
        a.asked_at = time.monotonic()

    def _check_chunk_timeout(self) -> None:
        a = self.action
        if a is None or a.done or a.operation != "install" or not a.asked_at:
            return
        if "no-reask" in ACTIVE_FAULTS:
            return
        if time.monotonic() - a.asked_at > CHUNK_TIMEOUT_S * 2 ** min(a.retries, 3):
            a.retries += 1
            log.info("chunk at %d late; asking again", a.offset)
            self._ask()

    def _on_chunk(self, data: bytes) -> None:
        a = self.action
        if a is None or a.done or a.operation != "install":
            return
        if len(data) >= 2 and data[0] == 0xFF:
            self._fail(a, data[1])  # a chunk error (4.3): our request was malformed; do not repeat it
            return
        if len(data) < 2 or data[0] != 1 or len(data) < 2 + data[1] + 8:
            return  # not a chunk we understand: the timer asks again
        n = data[1]
        package_id = data[2 : 2 + n].decode("ascii", "replace")
        offset, package_size = struct.unpack_from("<II", data, 2 + n)
        body = data[2 + n + 8 :]
        if package_id != a.package_id:
            return  # a late chunk of an earlier action
        if not body:
            self._fail(a, BAD_OFFSET)  # "cannot serve this": fail instead of waiting
            return
        if offset != a.offset or package_size != a.package_size:
            return  # a duplicate or out of order
        a.retries = 0
        a.asked_at = 0.0
        a.bytes_received += len(body)
        a.chunks += 1
        try:
            self._accept(a, body)
        except Refused as exc:
            self._fail(a, exc.code)
            return
        if a.done:
            return
        if a.offset >= a.package_size:
            self._finish(a)
        else:
            if a.chunks % STATUS_EVERY_CHUNKS == 0:
                self._save_progress()
                self.status(a, "downloading")
            self._ask()

    def _accept(self, a: Action, body: bytes) -> None:
        s = self.flash.state
        if a.offset < MANIFEST_SIZE:
            a.manifest_bytes += body
            a.offset += len(body)
            if len(a.manifest_bytes) >= MANIFEST_SIZE:
                a.manifest = m = self._check_policy(parse_manifest(bytes(a.manifest_bytes), self.trust))
                if a.package_size != MANIFEST_SIZE + m.payload_size:
                    raise Refused(SIZE_MISMATCH)
                # The target is the slot that is not active; it stops being valid before it is written.
                a.target = 0 if s["active_slot"] != 0 else 1
                s["valid"][a.target] = False
                s["phase"] = "downloading"
                s["download"] = None  # saved by _save_progress once the manifest is in the slot
                self.flash.save()
                with open(self.flash.slot_path(a.target), "wb") as f:
                    f.write(m.raw + bytes(SLOT_MODEL_OFFSET - MANIFEST_SIZE))
                a.hasher = hashlib.sha256()
                self._save_progress()
                self.status(a, "downloading")
                self.publish_reported()
            return
        assert a.target is not None and a.manifest is not None
        with open(self.flash.slot_path(a.target), "r+b") as f:
            f.seek(SLOT_MODEL_OFFSET + a.offset - MANIFEST_SIZE)
            f.write(body)
        a.hasher.update(body)
        a.offset += len(body)

    def _check_policy(self, m: Manifest) -> Manifest:
        """1.1 policy, after the signature and the field ranges; then encodings (no decoder here)."""
        s = self.flash.state
        if m.hardware_class != self.hardware_class:
            raise Refused(WRONG_HARDWARE)
        if m.min_runtime_version > RUNTIME_VERSION:
            raise Refused(RUNTIME_TOO_OLD)
        if m.security_counter < s["security_floor"]:
            raise Refused(ROLLBACK_REFUSED)
        active = self.flash.manifest(s["active_slot"], self.trust) if s["active_slot"] is not None else None
        if active is not None and m.sequence <= active.sequence:
            raise Refused(REPLAYED)
        if max(m.model_size, m.payload_size) > SLOT_SIZE - SLOT_MODEL_OFFSET:
            raise Refused(TOO_LARGE)
        if m.arena_bytes > RAM_BUDGET and "ignore-arena" not in ACTIVE_FAULTS:
            raise Refused(ARENA_TOO_LARGE)
        if m.payload_encoding != 0:
            raise Refused(FIELD_RANGE, "no payload decoder")
        return m

    def _finish(self, a: Action) -> None:
        s = self.flash.state
        m, target = a.manifest, a.target
        assert m is not None and target is not None
        self.status(a, "verifying")
        if a.hasher.digest() != m.payload_sha256:
            self._fail(a, DIGEST_MISMATCH)
            return
        # The model as stored, re-read and hashed (what the runtime does from flash), against the signed
        # digest and the digest the desired state names.
        if self.flash.model_digest(target, m.model_size) != m.model_sha256 or m.model_sha256.hex() != (
            a.model_sha256
        ):
            self._fail(a, DIGEST_MISMATCH)
            return
        s["valid"][target] = True
        s["phase"], s["download"] = "downloaded", None
        self.flash.save()
        # Activate: the new model runs on trial, the old slot stays valid for a rollback.
        s["trial_from"], s["active_slot"], s["phase"] = s["active_slot"], target, "trial"
        self.flash.save()
        a.target = None
        self.status(a, "trial")
        self.publish_reported()
        # The trial check of a device without an engine (4.4): manifest re-authenticated, model re-hashed.
        again = self.flash.manifest(target, self.trust)
        if again is None or self.flash.model_digest(target, again.model_size) != again.model_sha256:
            self._abandon_trial()
            self.flash.save()
            a.done = True
            self.status(a, "rolled_back", 42)
            self.publish_reported()
            return
        s["security_floor"] = max(s["security_floor"], m.security_counter)  # rises on confirm only
        s["phase"], s["trial_from"], s["last_error"] = "idle", None, 0
        self.flash.save()
        a.done = True
        self.status(a, "confirmed")
        self.publish_reported()

    # --- revert ---

    def _revert(self, action: Action) -> None:
        s = self.flash.state
        if s["phase"] == "trial":
            self._abandon_trial()
            self.flash.save()
        if self.active_sha() == action.model_sha256:
            action.done = True
            self.status(action, "confirmed")  # the goal of a revert is the old model, active again
            self.publish_reported()
            return
        other = None if s["active_slot"] is None else 1 - s["active_slot"]
        m = self.flash.manifest(other, self.trust) if other is not None else None
        if m is None or m.model_sha256.hex() != action.model_sha256:
            self._fail(action, NO_PREVIOUS)
            return
        if m.security_counter < s["security_floor"]:
            self._fail(action, ROLLBACK_REFUSED)
            return
        s["active_slot"], s["phase"], s["last_error"] = other, "idle", 0
        self.flash.save()
        action.done = True
        self.status(action, "confirmed")
        self.publish_reported()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--provisioning", required=True, type=Path, help="the answer of POST /api/devices (JSON)")
    p.add_argument("--state-dir", required=True, type=Path, help="where the slots and state.json live")
    p.add_argument("--host", help="broker host (default: the answer's mqtt.host)")
    p.add_argument("--port", type=int, help="broker port (default: the answer's mqtt.port)")
    p.add_argument("--telemetry-period", type=float, default=10.0, help="seconds; 0: no telemetry")
    p.add_argument("--fault", action="append", choices=FAULTS, default=[], help="a deliberate defect (tests)")
    args = p.parse_args()
    ACTIVE_FAULTS.update(args.fault)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    answer = json.loads(args.provisioning.read_text())
    device = Device(answer, args.state_dir, args.host, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        device.run(stop, args.telemetry_period)


if __name__ == "__main__":
    main()
