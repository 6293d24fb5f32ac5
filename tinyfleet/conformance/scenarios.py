"""The scenarios a device must pass, in the order they run, each a pass/fail with a one-line reason.

Scenarios share one device and build on each other (the rollback needs the delta install before it),
so they run in order; a failed scenario does not stop the others, which judge what they can. The first
part runs against the real control plane; the second (scenarios_played.py) stops it and plays the
server on the broker, for packages and replies a real server never sends."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from tinyfleet.conformance.environment import Environment, Failed, close_service, wait_until
from tinyfleet.server.services.wire_validation import check_message
from tinyfleet.signing.manifest import MANIFEST_SIZE
from tinyfleet.signing.package import build_package

MODEL_NAME = "conformance"
MIN_RUNTIME = 256  # 0.1.0: what server-signed packages require (PROTOCOL 4.6)
DELTA_BLOCK = 32 * 1024  # the server's delta block (PROTOCOL 5.1): a bigger model has several
PAD_BYTES = 40_000  # makes a model of about 45 KB: two delta blocks, and it fits a 64 KiB slot
DEFAULT_CHUNK = 1024
SLOW_CHUNK = 128  # 360 requests for a 45 KB package: time to stop the device in the middle


def kit_model(name: str) -> bytes:
    return resources.files("tinyfleet.conformance").joinpath("models", name).read_bytes()


def padded(model: bytes, seed: int) -> bytes:
    """`model` with pseudo-random bytes after the flatbuffer (which readers ignore): a multi-block model
    whose compressed form is no smaller than its raw form, while a delta against the same padding with
    another model in front is small."""
    return model + random.Random(seed).randbytes(PAD_BYTES)


@dataclass
class Context:
    """What the scenarios learn and share."""

    env: Environment
    timeout: float
    decoder: bool = False  # the device reported "payload_decoder": true
    model_id: int = 0
    sequence: int = 0  # the highest sequence so far
    versions: dict[str, int] = field(default_factory=dict)  # label -> model version id
    rollouts: dict[str, int] = field(default_factory=dict)  # label -> rollout id
    models: dict[str, bytes] = field(default_factory=dict)  # label -> .tflite
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        a = kit_model("vibration-1.0.0.tflite")
        b = kit_model("vibration-1.1.0.tflite")
        self.models.update(A=a, B=b, AP=padded(a, 1), BP=padded(b, 1), BQ=padded(b, 2), AQ=padded(a, 3))

    def sha(self, label: str) -> str:
        return hashlib.sha256(self.models[label]).hexdigest()

    # ----- the device ----------------------------------------------------------------------------------

    def device_alive(self) -> None:
        if not self.env.device.running:
            code = self.env.device.process.returncode if self.env.device.process else None
            last = self.env.device.log_tail(1).strip()
            raise Failed(f"the device process exited (code {code}); its last log line: {last[:200]!r}")

    def reported(self) -> dict[str, Any] | None:
        """The device's latest reported state (4.2) as published."""
        for m in reversed(self.env.spy.since(0.0, "reported")):
            try:
                doc = m.json()
            except ValueError:
                continue
            if isinstance(doc, dict):
                return doc
        return None

    def active_sha(self) -> str | None:
        doc = self.reported() or {}
        slot = doc.get("active_slot")
        slots = doc.get("slots") or []
        if slot not in (0, 1) or len(slots) <= slot or not slots[slot].get("valid"):
            return None
        sha = slots[slot].get("model_sha256")
        return sha if isinstance(sha, str) else None

    # ----- packages -----------------------------------------------------------------------------------

    def kit_package(self, label: str, version: str, **overrides: Any) -> bytes:
        """A raw package of a kit model signed with the kit's key (trusted by the server, so in the
        device's trust store); the next sequence unless overridden."""
        if "sequence" not in overrides:
            self.sequence += 1
        fields: dict[str, Any] = {
            "name": MODEL_NAME,
            "version": version,
            "sequence": self.sequence,
            "security_counter": 0,
            "hardware_class": self.env.hardware_class,
            "min_runtime_version": MIN_RUNTIME,
        }
        fields.update(overrides)
        return build_package(self.models[label], self.env.kit_key, **fields)

    def upload_kit(self, label: str, version: str) -> int:
        """Kit-signed: the server sends it as uploaded, raw (it cannot re-sign another key's package)."""
        result = self.env.api.upload_package(self.kit_package(label, version))
        self.versions[label] = int(result["model_version_id"])
        return self.versions[label]

    def upload_server_signed(self, label: str, version: str) -> int:
        """A .tflite the server signs: it may send it compressed or as a delta (to a device that decodes)."""
        result = self.env.api.upload_tflite(
            self.model_id, self.models[label], version, self.env.hardware_class
        )
        self.versions[label] = int(result["id"])
        self.sequence = max([self.sequence, *(int(p["sequence"]) for p in result.get("packages", []))])
        return self.versions[label]

    # ----- rollouts -----------------------------------------------------------------------------------

    def roll_out(self, label: str, **options: Any) -> int:
        body = {
            "name": f"conformance-{label}-{len(self.rollouts)}",
            "model_version_id": self.versions[label],
            "selector": {"device_ids": [self.env.device_id]},
            "start": True,
            **options,
        }
        rollout = self.env.api.call("POST", "/rollouts", json=body)
        self.rollouts[label] = int(rollout["id"])
        return self.rollouts[label]

    def wait_rollout(self, rollout_id: int, states: tuple[str, ...]) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def settled() -> bool:
            nonlocal last
            self.device_alive()
            last = self.env.api.call("GET", f"/rollouts/{rollout_id}")
            return last["state"] in states

        try:
            wait_until(settled, self.timeout, f"rollout {rollout_id} to reach {'/'.join(states)}", 0.5)
        except Failed:
            raise Failed(
                f"rollout {last.get('state')} ({last.get('state_reason') or 'no reason'}),"
                f" not {'/'.join(states)}; actions: {self.action_summary(rollout_id)}"
            ) from None
        return last

    def actions(self, rollout_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.env.api.call("GET", f"/rollouts/{rollout_id}/actions")
        return result

    def action_summary(self, rollout_id: int) -> str:
        return ", ".join(
            f"{a['purpose']} {a['state']}"
            + (f" code {a['error_code']} {a['error']}" if a["error_code"] else "")
            for a in self.actions(rollout_id)
        )

    def set_chunk_size(self, size: int) -> None:
        """The hardware class's chunk size (4.1 desired `chunk_size`): small ones make a download slow
        enough to interrupt on purpose."""
        body = {"name": "conformance", "chunk_size": size}
        self.env.api.call("PUT", f"/hardware-classes/{self.env.hardware_class}", json=body)

    def install(self, label: str) -> dict[str, Any]:
        """Roll `label` out to the device; it must complete and the device run the model. Its action."""
        rollout_id = self.roll_out(label)
        self.wait_rollout(rollout_id, ("completed",))
        wait_until(lambda: self.active_sha() == self.sha(label), 30, "the reported state to show the model")
        (action,) = [a for a in self.actions(rollout_id) if a["purpose"] != "rollback"]
        return action


# ----- scenarios against the real control plane ---------------------------------------------------------


def connect(ctx: Context) -> str:
    env = ctx.env
    mark = time.monotonic()
    if not env.device.running:
        env.device.start()

    def online() -> bool:
        ctx.device_alive()
        return any(m.payload and m.json().get("online") is True for m in env.spy.since(mark, "presence"))

    wait_until(online, ctx.timeout, 'presence {"online": true}')
    wait_until(lambda: ctx.reported() is not None, ctx.timeout, "a reported state")
    doc = ctx.reported()
    wrong = check_message("reported", doc)
    if wrong:
        raise Failed(f"reported state not valid: {wrong}")
    if not [m for m in env.spy.since(mark, "reported") if m.retain] and not _retained("reported", ctx):
        raise Failed("the reported state is not retained")
    assert doc is not None
    if doc["hardware_class"] != env.hardware_class:
        raise Failed(f"reports hardware class {doc['hardware_class']}, provisioned {env.hardware_class}")
    if doc["runtime_version"] < MIN_RUNTIME:
        raise Failed(f"runtime_version {doc['runtime_version']} < 256: it refuses server-signed packages")
    wait_until(
        lambda: env.api.call("GET", f"/devices/{env.device_id}")["online"], 30, "the server to see it online"
    )
    capabilities = doc.get("capabilities")
    ctx.decoder = bool(isinstance(capabilities, dict) and capabilities.get("payload_decoder"))
    model = env.api.call("POST", "/models", json={"name": MODEL_NAME})
    ctx.model_id = int(model["id"])
    caps = "no capabilities" if capabilities is None else f"payload_decoder {ctx.decoder}"
    return f"online, reported state valid, runtime {doc['runtime_version']}, {caps}"


def _retained(kind: str, ctx: Context) -> bool:
    """Whether the broker holds a retained message on tf/{id}/{kind}: a fresh subscriber gets it."""
    env = ctx.env
    got: list[bool] = []
    client = env.player()
    try:
        client.on_message = lambda _c, _u, msg: got.append(bool(msg.retain and msg.payload))
        client.subscribe(f"tf/{env.device_id}/{kind}", qos=1)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        close_service(client)
    return any(got)


def install_compressed(ctx: Context) -> str:
    """The first install: server-signed, so compressed (encoding 1) to a device that decodes, raw else."""
    ctx.upload_server_signed("A", "1.0.0")
    action = ctx.install("A")
    want = 1 if ctx.decoder else 0
    if action["payload_encoding"] != want:
        raise Failed(f"sent with encoding {action['payload_encoding']}, expected {want}")
    return f"confirmed, encoding {want} ({action['sent_size']} of {action['raw_size']} bytes)"


def install_raw(ctx: Context) -> str:
    ctx.upload_kit("B", "1.1.0")
    action = ctx.install("B")
    if action["payload_encoding"] != 0:
        raise Failed(f"sent with encoding {action['payload_encoding']}, expected 0")
    return f"confirmed, raw ({action['raw_size']} bytes)"


def install_delta(ctx: Context) -> str:
    """A multi-block base (raw) and then its update, a delta to a device that decodes, raw else."""
    ctx.upload_kit("AP", "2.0.0")
    ctx.install("AP")
    ctx.upload_server_signed("BP", "2.1.0")
    action = ctx.install("BP")
    want = 2 if ctx.decoder else 0
    if action["payload_encoding"] != want:
        raise Failed(f"sent with encoding {action['payload_encoding']}, expected {want}")
    blocks = -(-len(ctx.models["BP"]) // DELTA_BLOCK)
    return f"confirmed, encoding {want}, {blocks} blocks, {action['sent_size']} of {action['raw_size']} bytes"


def rollback(ctx: Context) -> str:
    rollout_id = ctx.rollouts.get("BP")
    if rollout_id is None or ctx.active_sha() != ctx.sha("BP"):
        raise Failed("needs the delta install to have passed")
    mark = time.monotonic()
    ctx.env.api.call("POST", f"/rollouts/{rollout_id}/rollback")
    ctx.wait_rollout(rollout_id, ("rolled_back",))
    wait_until(lambda: ctx.active_sha() == ctx.sha("AP"), 30, "the reported state to show the previous model")
    if ctx.env.spy.since(mark, "chunk/req"):
        raise Failed("it downloaded for a rollback (revert needs no download)")
    return "reverted to the previous slot without download"


def resume(ctx: Context) -> str:
    """Restarted in the middle of a download, it goes on from where it was (4.3, 4.4 offset)."""
    ctx.set_chunk_size(SLOW_CHUNK)
    try:
        return _resume(ctx)
    finally:
        ctx.set_chunk_size(DEFAULT_CHUNK)


def _resume(ctx: Context) -> str:
    env = ctx.env
    ctx.upload_kit("BQ", "3.0.0")
    mark = time.monotonic()
    rollout_id = ctx.roll_out("BQ")
    threshold = MANIFEST_SIZE + 8192  # past the first flash sectors, so that progress was saved

    def far_enough() -> bool:
        ctx.device_alive()
        return any(_offset(m.json()) >= threshold for m in env.spy.since(mark, "chunk/req"))

    wait_until(far_enough, ctx.timeout, f"a chunk request at offset {threshold} or more", 0.02)
    env.device.stop()
    stopped = time.monotonic()
    done = [m for m in env.spy.since(mark, "status") if m.json().get("state") in ("trial", "confirmed")]
    if done:
        raise Failed("the download finished before the kit could restart the device")
    env.device.start()
    ctx.wait_rollout(rollout_id, ("completed",))
    requests = [_offset(m.json()) for m in env.spy.since(stopped, "chunk/req")]
    if not requests:
        raise Failed("completed without a chunk request after the restart")
    # Asking for the manifest again is fine (it is 292 bytes); the payload must not start over.
    payload = [o for o in requests if o >= MANIFEST_SIZE]
    if not payload or min(payload) <= MANIFEST_SIZE:
        raise Failed(
            f"downloaded the payload again from its start (offsets {requests[:3]}...) instead of resuming"
        )
    wait_until(lambda: ctx.active_sha() == ctx.sha("BQ"), 30, "the reported state to show the model")
    return f"resumed at package offset {min(payload)} after a restart, confirmed"


def _offset(doc: Any) -> int:
    value = doc.get("offset") if isinstance(doc, dict) else None
    return value if isinstance(value, int) else -1


def timed_out(ctx: Context) -> str:
    """An action that times out while the device is away (stopped as soon as it starts downloading) is
    no longer in its desired state, and the device does not carry it out when it comes back (4.1, 4.4,
    issue 19 item 7)."""
    ctx.set_chunk_size(SLOW_CHUNK)
    try:
        return _timed_out(ctx)
    finally:
        ctx.set_chunk_size(DEFAULT_CHUNK)


def _timed_out(ctx: Context) -> str:
    env = ctx.env
    before = ctx.active_sha()
    ctx.upload_kit("AQ", "4.0.0")
    mark = time.monotonic()
    rollout_id = ctx.roll_out("AQ", action_timeout_seconds=4)

    def started() -> bool:
        ctx.device_alive()
        return bool(env.spy.since(mark, "chunk/req"))

    wait_until(started, ctx.timeout, "the device to start the download", 0.02)
    env.device.stop()

    def closed() -> bool:
        return any(a["state"] == "timed_out" for a in ctx.actions(rollout_id))

    wait_until(closed, ctx.timeout, "the action to time out", 0.5)
    (action,) = [a for a in ctx.actions(rollout_id) if a["state"] == "timed_out"]
    wait_until(
        lambda: (
            (env.api.call("GET", f"/devices/{env.device_id}").get("desired") or {}).get("action_id")
            != action["id"]
        ),
        30,
        "the server to take the timed-out action out of the desired state",
    )
    back = time.monotonic()
    env.device.start()
    wait_until(lambda: bool(env.spy.since(back, "reported")), ctx.timeout, "the device back online")
    time.sleep(5)  # time to (wrongly) go on with the closed action
    carried_on = [s for s in env.spy.statuses(action["id"], back) if s.get("state") in ("trial", "confirmed")]
    if carried_on or env.spy.since(back, "chunk/req"):
        raise Failed("the device went on with the timed-out action after it came back")
    if ctx.active_sha() != before:
        raise Failed("the active model changed")
    return "timed out while away, desired state cleared, nothing done when back"


def telemetry(ctx: Context) -> str:
    env = ctx.env

    def some() -> bool:
        ctx.device_alive()
        return bool(env.spy.since(ctx.started, "telemetry"))

    wait_until(some, ctx.timeout, "a telemetry message")
    messages = env.spy.since(ctx.started, "telemetry")
    for m in messages:
        wrong = check_message("telemetry", _doc(m.payload))
        if wrong:
            raise Failed(f"telemetry not valid: {wrong}")
    stats = env.api.call("GET", "/gateway/stats")
    if stats["malformed"].get("telemetry") or stats["rejected"]:
        raise Failed(f"the server refused telemetry: {stats['malformed']} {stats['rejected']}")
    return f"{len(messages)} messages valid and accepted"


def messages_valid(ctx: Context) -> str:
    """Every JSON message the device sent during the run is valid per its schema (PROTOCOL 4)."""
    counts: dict[str, int] = {}
    for m in ctx.env.spy.since(0.0):
        if m.kind not in ("reported", "presence", "chunk/req", "status", "telemetry") or not m.payload:
            continue
        wrong = check_message(m.kind, _doc(m.payload))
        if wrong:
            raise Failed(f"{m.kind} not valid: {wrong}")
        counts[m.kind] = counts.get(m.kind, 0) + 1
    if ctx.env.server_running:
        malformed = ctx.env.api.call("GET", "/gateway/stats")["malformed"]
        if malformed:
            raise Failed(f"the server counted malformed messages: {malformed}")
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def _doc(payload: bytes) -> Any:
    import json

    try:
        return json.loads(payload)
    except ValueError:
        return "<not JSON>"


@dataclass(frozen=True)
class Scenario:
    name: str
    section: str  # the PROTOCOL sections it checks
    checks: str  # one line for the table and docs
    run: Callable[[Context], str]


SERVER_SCENARIOS = (
    Scenario("connect", "4.2, 4.6", "connects, presence, reported state per schema", connect),
    Scenario(
        "install-compressed",
        "4.1, 4.3, 5",
        "first install: encoding 1 if it decodes, else raw",
        install_compressed,
    ),
    Scenario("install-raw", "1.1, 4.1, 4.3", "a raw package (offline-signed)", install_raw),
    Scenario("install-delta", "5", "multi-block model: encoding 2 if it decodes, else raw", install_delta),
    Scenario("rollback", "4.1", "revert to the previous slot, no download", rollback),
    Scenario("resume-after-restart", "4.3, 4.4, 5.4", "restarted mid-download, resumes", resume),
    Scenario("timed-out-action", "4.4", "a timed-out action is not carried out later", timed_out),
    Scenario("telemetry", "4.5", "telemetry per schema, accepted", telemetry),
    Scenario("messages-valid", "4", "every message per its schema", messages_valid),
)
