"""Scenarios where the kit plays the server on the broker (the real control plane is stopped): packages
a real server never sends (tampered, unknown key, wrong class, replayed) and chunk replies it sends only
on faults (lost, garbled, chunk errors). Each refusal must carry the right section 2 code in the
`failed` status and keep the active model."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from tinyfleet.conformance.environment import Failed, close_service
from tinyfleet.conformance.scenarios import MIN_RUNTIME, MODEL_NAME, Context, Scenario
from tinyfleet.conformance.scenarios_acl import acl_limits
from tinyfleet.server.services.messages import encode_chunk, encode_chunk_error
from tinyfleet.signing.codes import ErrorCode
from tinyfleet.signing.keys import generate_private_key
from tinyfleet.signing.manifest import MANIFEST_SIZE
from tinyfleet.signing.package import build_package
from tinyfleet.signing.policy import SLOT_MODEL_OFFSET

CHUNK = 1024
FINAL = ("confirmed", "failed", "rolled_back")
# answer(request, package) -> the reply to publish, several to publish in order, or None to drop the
# request (a lost message)
Answer = Callable[[dict[str, Any], bytes], bytes | list[bytes] | None]


def serve(request: dict[str, Any], package: bytes) -> bytes:
    """What the server answers (4.3)."""
    offset, length = request["offset"], min(request["length"], CHUNK)
    data = package[offset : offset + length]
    return encode_chunk(request["package_id"], offset, len(package), data)


@dataclass
class Played:
    """One install the kit serves: the requests it saw and the statuses it got."""

    requests: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)
    answered: int = 0  # requests of this install the kit answered
    drops: int = 0  # times the kit's own connection was closed under it

    def stalled(self, ctx: Context, action_id: str) -> str:
        """Why no final status came: the device's last request and state, and the kit's connection."""
        states = [s.get("state") for s in self.statuses]
        last = "no chunk request"
        if self.requests:
            at, doc = self.requests[-1]
            last = f"last chunk request offset {doc.get('offset')} {time.monotonic() - at:.0f} s ago"
        phase = (ctx.reported() or {}).get("phase")
        return (
            f"action {action_id}: no final status after {ctx.timeout:.0f} s (statuses {states}); "
            f"{last} ({len(self.requests)} requests); reported phase {phase}; "
            f"the kit's player connection dropped {self.drops} times"
        )


def play_install(
    ctx: Context, label: str, package: bytes, answer: Answer = serve, linger: float = 0.0
) -> Played:
    """Publish an install of `package` as the device's desired state and answer its chunk requests
    with `answer`, until it reports a final state (then `linger` seconds more)."""
    env = ctx.env
    played = Played()
    action_id = f"conf-{ctx.sequence}-{label}-{int(time.time() * 1000) % 10**8}"
    package_id = f"pkg-{action_id}"
    client = env.player()
    topic = f"tf/{env.device_id}"

    def on_message(c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if msg.topic.endswith("/chunk/req") and isinstance(doc, dict):
            played.requests.append((time.monotonic(), doc))
            if doc.get("package_id") == package_id and isinstance(doc.get("offset"), int):
                reply = answer(doc, package)
                if reply is not None:
                    played.answered += 1
                for body in [reply] if isinstance(reply, bytes) else reply or []:
                    c.publish(f"{topic}/chunk", body, qos=1)
        elif msg.topic.endswith("/status") and isinstance(doc, dict) and doc.get("action_id") == action_id:
            played.statuses.append(doc)
            if doc.get("state") in FINAL:
                played.finished.set()

    subscriptions = [(f"{topic}/chunk/req", 1), (f"{topic}/status", 1)]

    def on_disconnect(_c: mqtt.Client, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        played.drops += 1

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        # paho reconnects by itself, but the session (MQTT 5, no expiry) and its subscriptions are gone.
        if not reason.is_failure:
            c.subscribe(subscriptions)

    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.on_connect = on_connect
    client.subscribe(subscriptions)
    try:
        time.sleep(0.3)  # the subscriptions are in place before the device hears of the action
        desired = {
            "action_id": action_id,
            "operation": "install",
            "package_id": package_id,
            "package_size": len(package),
            "model_sha256": ctx.sha(label),
            "chunk_size": CHUNK,
        }
        client.publish(f"{topic}/desired", json.dumps(desired), qos=1, retain=True).wait_for_publish(10)
        deadline = time.monotonic() + ctx.timeout
        while not played.finished.wait(0.5):
            ctx.device_alive()
            if time.monotonic() > deadline:
                raise Failed(played.stalled(ctx, action_id))
        if played.statuses[-1].get("state") == "confirmed":
            # The reported state follows the status: the next scenario's "active model" must be this one.
            settle = time.monotonic() + 10
            while ctx.active_sha() != ctx.sha(label) and time.monotonic() < settle:
                time.sleep(0.1)
        time.sleep(linger)
    finally:
        close_service(client)
    return played


def _refused(ctx: Context, label: str, package: bytes, code: ErrorCode) -> str:
    before = ctx.active_sha()
    played = play_install(ctx, label, package)
    last = played.statuses[-1]
    if last["state"] != "failed":
        raise Failed(f"ended {last['state']}, expected failed with {code.name} ({int(code)})")
    if last.get("error_code") != int(code):
        raise Failed(f"failed with code {last.get('error_code')}, expected {code.name} ({int(code)})")
    time.sleep(0.5)
    if ctx.active_sha() != before:
        raise Failed("the active model changed")
    return f"failed with {code.name} ({int(code)}), active model kept"


def bad_signature(ctx: Context) -> str:
    package = bytearray(ctx.kit_package("A", "5.0.0"))
    package[100] ^= 0x01  # a signed manifest byte: the signature no longer holds
    return _refused(ctx, "A", bytes(package), ErrorCode.BAD_SIGNATURE)


def bad_digest(ctx: Context) -> str:
    package = bytearray(ctx.kit_package("A", "5.0.1"))
    package[-1] ^= 0x01  # a model byte: the signed payload digest no longer holds
    return _refused(ctx, "A", bytes(package), ErrorCode.DIGEST_MISMATCH)


def unknown_key(ctx: Context) -> str:
    stranger = generate_private_key()
    ctx.sequence += 1
    package = build_package(
        ctx.models["A"],
        stranger,
        name=MODEL_NAME,
        version="5.0.2",
        sequence=ctx.sequence,
        security_counter=0,
        hardware_class=ctx.env.hardware_class,
        min_runtime_version=MIN_RUNTIME,
    )
    return _refused(ctx, "A", package, ErrorCode.UNKNOWN_KEY)


def wrong_hardware(ctx: Context) -> str:
    package = ctx.kit_package("A", "5.0.3", hardware_class=(ctx.env.hardware_class + 1) & 0xFFFFFFFF)
    return _refused(ctx, "A", package, ErrorCode.WRONG_HARDWARE)


def replayed(ctx: Context) -> str:
    # An authentic package, but its sequence is not above the active model's.
    package = ctx.kit_package("A", "0.9.0", sequence=1)
    return _refused(ctx, "A", package, ErrorCode.REPLAYED)


def chunk_error(ctx: Context) -> str:
    """A chunk error (0xFF, code, reason) fails the action with that code; the request is not repeated."""
    before = ctx.active_sha()
    reply = encode_chunk_error(ErrorCode.BAD_MESSAGE, "length must be an integer in 1..4294967295")
    played = play_install(ctx, "A", ctx.kit_package("A", "5.1.0"), lambda _r, _p: reply, linger=3.0)
    last = played.statuses[-1]
    if last["state"] != "failed" or last.get("error_code") != ErrorCode.BAD_MESSAGE:
        raise Failed(
            f"ended {last['state']} code {last.get('error_code')}, expected failed with BAD_MESSAGE (100)"
        )
    if len(played.requests) > 1:
        raise Failed(f"asked {len(played.requests)} times after a chunk error (must not repeat the request)")
    if ctx.active_sha() != before:
        raise Failed("the active model changed")
    return "failed with the chunk error's code, did not repeat the request"


def lost_and_garbled(ctx: Context) -> str:
    """A request that gets no answer is asked again (same offset); a reply of unknown format is
    dropped and the request asked again; a duplicate chunk is harmless. Then the install completes."""
    faults: dict[str, int] = {}

    def answer(request: dict[str, Any], package: bytes) -> bytes | None:
        offset = request["offset"]
        if offset >= MANIFEST_SIZE and "lost" not in faults:
            faults["lost"] = offset
            return None
        if offset > faults.get("lost", 1 << 40) and "garbled" not in faults:
            faults["garbled"] = offset
            return b"\x07garbage"
        return serve(request, package)

    package = ctx.kit_package("B", "6.0.0")
    played = play_install(ctx, "B", package, answer)
    last = played.statuses[-1]
    if last["state"] != "confirmed":
        raise Failed(f"ended {last['state']} code {last.get('error_code')} after a lost and a garbled chunk")
    for fault in ("lost", "garbled"):
        asked = [doc["offset"] for _t, doc in played.requests if doc.get("offset") == faults.get(fault)]
        if len(asked) < 2:
            raise Failed(f"did not ask again for offset {faults.get(fault)} after a {fault} chunk")
    return f"asked again after a lost chunk (offset {faults['lost']}) and a garbled one, confirmed"


def _limits(ctx: Context) -> tuple[int, int]:
    """The slot size and RAM budget the device reports (4.2 capabilities)."""
    caps = (ctx.reported() or {}).get("capabilities")
    if not isinstance(caps, dict):
        raise Failed("no capabilities in the reported state: the kit cannot size an oversized package")
    slot_size, ram_budget = caps.get("slot_size"), caps.get("ram_budget")
    if not isinstance(slot_size, int) or not isinstance(ram_budget, int):
        raise Failed("capabilities lack an integer slot_size and ram_budget")
    return slot_size, ram_budget


def oversized(ctx: Context) -> str:
    """A model one byte above the slot's capacity (slot_size - 304, PROTOCOL 1.4): TOO_LARGE; an arena
    one byte above the RAM budget: ARENA_TOO_LARGE. Both refused, the active model kept."""
    slot_size, ram_budget = _limits(ctx)
    capacity = slot_size - SLOT_MODEL_OFFSET
    # Bytes after the flatbuffer are ignored by readers: a valid model of exactly capacity + 1 bytes.
    ctx.models["BIG"] = ctx.models["A"] + bytes(capacity + 1 - len(ctx.models["A"]))
    too_large = _refused(ctx, "BIG", ctx.kit_package("BIG", "5.2.0"), ErrorCode.TOO_LARGE)
    arena = ctx.kit_package("A", "5.2.1", arena_bytes=ram_budget + 1)
    too_big_arena = _refused(ctx, "A", arena, ErrorCode.ARENA_TOO_LARGE)
    return f"model of {capacity + 1} bytes {too_large}; arena of {ram_budget + 1} bytes {too_big_arena}"


def _not_active(ctx: Context) -> str:
    """A or B, whichever the device does not run: an install of the active model is confirmed at once
    (4.4), so a scenario that needs a download must not depend on what an earlier one left active."""
    return "A" if ctx.active_sha() != ctx.sha("A") else "B"


def duplicated_chunks(ctx: Context) -> str:
    """Every chunk is sent twice, and the previous one again before it (out of order): duplicates are
    harmless (4.3), so the install is confirmed. All copies go out on the kit's one player connection:
    the broker takes the username as client id, so a second connection of the same account would
    close the first (and the two would take turns, each losing its subscriptions)."""
    last: dict[str, dict[str, Any]] = {}
    label = _not_active(ctx)
    mark = time.monotonic()

    def answer(request: dict[str, Any], package: bytes) -> list[bytes]:
        reply = serve(request, package)
        replies = [serve(last["previous"], package)] if "previous" in last else []  # out of order
        last["previous"] = request
        return [*replies, reply, reply]  # and a duplicate

    played = play_install(ctx, label, ctx.kit_package(label, "6.1.0"), answer)
    final = played.statuses[-1]
    if final["state"] != "confirmed":
        raise Failed(f"ended {final['state']} code {final.get('error_code')} with duplicated chunks")
    if ctx.active_sha() != ctx.sha(label):
        raise Failed("confirmed, but the reported active model is not the one sent")
    # The copies really went out: the spy sees every chunk the broker routed to the device's topic.
    copies = len(ctx.env.spy.since(mark, "chunk")) - played.answered
    if played.answered < 2 or copies < played.answered:
        raise Failed(f"the kit sent {copies} extra copies for {played.answered} answered requests")
    return f"confirmed, every chunk sent twice and the previous one again ({len(played.requests)} requests)"


def selftest_failure(ctx: Context) -> str:
    """A package whose self-test digest is wrong (1.2): a device with an inference engine activates it
    for trial, the self-test fails, the runtime reverts to the previous model and the action ends
    `failed` or `rolled_back` with SELFTEST_FAILED (42) (1.4, 4.4). A device without an engine may
    confirm after the integrity check alone (4.4), which the kit then accepts."""
    caps = (ctx.reported() or {}).get("capabilities")
    engine = isinstance(caps, dict) and bool(caps.get("engine"))
    before = ctx.active_sha()
    label = _not_active(ctx)
    wrong = hashlib.sha256(b"not the self-test output").digest()
    package = ctx.kit_package(label, "7.0.0", selftest_seed=0x1234, selftest_output_sha256=wrong)
    played = play_install(ctx, label, package)
    last = played.statuses[-1]
    if not engine:
        if last["state"] != "confirmed" or ctx.active_sha() != ctx.sha(label):
            ended = f"{last['state']} code {last.get('error_code')}"
            raise Failed(f"no inference engine: ended {ended}, expected confirmed")
        return "no inference engine: confirmed after the integrity check (PROTOCOL 4.4 allows it)"
    states = [st.get("state") for st in played.statuses]
    if "trial" not in states:
        raise Failed(f"never reported trial (statuses {states})")
    if last["state"] not in ("failed", "rolled_back"):
        raise Failed(f"ended {last['state']}, expected failed or rolled_back with SELFTEST_FAILED (42)")
    code = last.get("error_code")
    if code != ErrorCode.SELFTEST_FAILED and not (last["state"] == "rolled_back" and code is None):
        raise Failed(f"ended {last['state']} with code {code}, expected SELFTEST_FAILED (42)")
    time.sleep(0.5)
    if ctx.active_sha() != before:
        raise Failed("the previous model is not active again")
    return f"trial, self-test failed: {last['state']} with code {code}, previous model active again"


PLAYED_SCENARIOS = (
    Scenario("refuses-bad-signature", "1.1, 2", "tampered manifest: BAD_SIGNATURE (5)", bad_signature),
    Scenario("refuses-bad-digest", "1.1, 2", "tampered model: DIGEST_MISMATCH (6)", bad_digest),
    Scenario("refuses-unknown-key", "1.3, 2", "signed by an untrusted key: UNKNOWN_KEY (4)", unknown_key),
    Scenario("refuses-wrong-hardware", "1.1, 2", "other hardware class: WRONG_HARDWARE (32)", wrong_hardware),
    Scenario("refuses-replayed", "1.1, 2", "sequence not above the active one: REPLAYED (35)", replayed),
    Scenario("chunk-error", "4.3", "a chunk error fails the action with its code, no repeat", chunk_error),
    Scenario("lost-and-garbled-chunks", "4.3", "re-asks after a lost or unreadable chunk", lost_and_garbled),
    Scenario("refuses-oversized", "1.4, 2", "oversized: TOO_LARGE (36), ARENA_TOO_LARGE (37)", oversized),
    Scenario("duplicated-chunks", "4.3", "chunks twice and out of order: still confirmed", duplicated_chunks),
    Scenario("selftest-failure", "1.4, 4.4", "bad self-test digest: reverted, code 42", selftest_failure),
    Scenario("acl-limits", "4.6", "its credentials cannot read or write others' topics", acl_limits),
)
