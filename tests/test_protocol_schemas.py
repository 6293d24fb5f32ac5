"""docs/schemas/ (JSON Schema draft 2020-12) against the real parts, both ways (PROTOCOL section 4):

(a) every JSON message the real server, the simulated devices (driving the real C runtime) and the
    reference device (examples/reference_device) put on a private Mosquitto during a small round (install
    v1, install v2, roll back, abort) is valid against the schema of its topic; so are the provisioning
    request and answer (4.6);
(b) malformed messages that a schema refuses are refused by the real gateway too (counted as malformed,
    or answered with a chunk error), and change nothing on the server."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.examples.protocol_env import EXAMPLES, Capture, ProtocolEnv, load_schemas, protocol_env
from tests.support.e2e_harness import telemetry_profile, wait_for
from tests.support.reference_device import RunningDevice
from tinyfleet.sim.cli import provision_fleet
from tinyfleet.sim.fleet import FleetConfig, LocalFleet
from tinyfleet.sim.profiles import FleetMix

V1 = (EXAMPLES / "vibration-1.0.0.tflite").read_bytes()
V2 = (EXAMPLES / "vibration-1.1.0.tflite").read_bytes()
SCHEMA_OF = {
    "desired": "desired.schema.json",
    "reported": "reported.schema.json",
    "presence": "presence.schema.json",
    "chunk/req": "chunk-request.schema.json",
    "status": "status.schema.json",
    "telemetry": "telemetry.schema.json",
}


def validators() -> dict[str, Draft202012Validator]:
    schemas = load_schemas()
    registry: Registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in schemas.values()
    )
    out = {}
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
        out[name] = Draft202012Validator(schema, registry=registry)
    return out


def errors(validator: Draft202012Validator, doc: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def kind_of(topic: str) -> str:
    return topic.split("/", 2)[2]


def test_schemas_are_valid_and_referenced_from_the_protocol() -> None:
    found = validators()
    assert set(SCHEMA_OF.values()) | {"capabilities.schema.json"} <= set(found)
    protocol = (Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md").read_text()
    for name in found:
        assert f"schemas/{name}" in protocol, f"{name} is not referenced from PROTOCOL.md"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ProtocolEnv]:
    with protocol_env(tmp_path) as e:
        yield e


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_real_messages_are_valid_and_malformed_ones_are_refused(env: ProtocolEnv) -> None:
    v = validators()
    capture = Capture()
    spy = env.service_client("tinyfleet-spy")
    spy.on_message = capture.on_message
    spy.subscribe("tf/#", qos=1)
    time.sleep(0.3)
    try:
        rollouts, versions = _round(env, v, capture)
        _malformed(env, v, capture, rollouts[0], versions[1])
    finally:
        spy.disconnect()
        spy.loop_stop()


def _round(
    env: ProtocolEnv, v: dict[str, Draft202012Validator], capture: Capture
) -> tuple[list[int], list[int]]:
    # Provisioning (4.6): the request body and the answer.
    request = {"id": "schema-ref", "hardware_class": 1, "name": "reference", "tags": ["schema"]}
    assert not errors(v["provision-request.schema.json"], request)
    answer = env.provision("schema-ref", 1, name="reference", tags=["schema"])
    assert not errors(v["provision-answer.schema.json"], answer)
    profile = telemetry_profile(period_s=1.0, inference_hz=5.0)
    specs, provisioned = provision_fleet(env.api, 2, FleetMix.single(profile), "schema-sim", "schema")
    env.broker.reload()
    time.sleep(0.2)
    fleet = LocalFleet(
        FleetConfig(env.broker.host, env.broker.port, provisioned[0].trusted_keys, tuple(specs))
    )
    ref = RunningDevice(answer, env.workdir, env.broker.host, env.broker.port)
    fleet.start()
    try:
        assert fleet.wait_online(timeout=60)
        ids = [s.device_id for s in specs] + ["schema-ref"]
        wait_for(lambda: all(env.api.device(d)["online"] for d in ids), 30, "all three devices online")
        model = env.api.ensure_model("vibration")
        versions = [
            env.api.upload_tflite(model["id"], data, version=ver, hardware_class=1)["id"]
            for data, ver in ((V1, "1.0.0"), (V2, "1.1.0"))
        ]
        rollouts = []
        for name, version_id in zip(("schema-v1", "schema-v2"), versions, strict=True):
            r = env.api.create_rollout(
                name=name, model_version_id=version_id, selector={"device_ids": ids}, start=True
            )
            rollouts.append(r["id"])
            _settle(env, r["id"], ("completed",), ref)
        env.api.rollout_command(rollouts[1], "rollback")
        _settle(env, rollouts[1], ("rolled_back",), ref)
        wait_for(lambda: env.api.telemetry_summary()["reports"] >= 3, 30, "telemetry from the devices")
    finally:
        fleet.stop()
        ref.stop()

    seen: dict[str, int] = {}
    for topic, payload, _retain in capture.snapshot():
        kind = kind_of(topic)
        if kind == "chunk":
            assert payload[:1] in (b"\x01", b"\xff"), "a chunk is format 1 or a chunk error (4.3)"
            continue
        if not payload:
            continue  # a retained message cleared
        doc = json.loads(payload)
        problems = errors(v[SCHEMA_OF[kind]], doc)
        assert not problems, f"{topic}: {doc}: {problems}"
        if kind == "desired":
            kind = f"desired/{doc['operation']}"
        seen[kind] = seen.get(kind, 0) + 1
    for kind in (
        "desired/install",
        "desired/revert",
        "reported",
        "presence",
        "chunk/req",
        "status",
        "telemetry",
    ):
        assert seen.get(kind), f"no {kind} message was seen: {seen}"
    assert not env.api.gateway_stats()["malformed"]
    print("messages validated by kind:", seen)
    return rollouts, versions


def _settle(env: ProtocolEnv, rollout_id: int, states: tuple[str, ...], ref: RunningDevice) -> None:
    last: dict[str, Any] = {}

    def done() -> bool:
        nonlocal last
        last = env.api.rollout(rollout_id)
        return last["state"] in states

    try:
        wait_for(done, 120, f"rollout {rollout_id} to reach {states}")
    except AssertionError:
        raise AssertionError(f"{last.get('state')}: {last.get('state_reason')}\n{ref.log()}") from None


# ----- (b) what a schema refuses, the server refuses ------------------------------------------------

PROBE = "schema-probe"
SHA = hashlib.sha256(V1).hexdigest()
GOOD_REPORTED = {
    "runtime_version": 256,
    "hardware_class": 1,
    "phase": "idle",
    "active_slot": 0,
    "security_floor": 0,
    "download_offset": 0,
    "last_error": 0,
    "slots": [
        {"valid": True, "model_name": "vibration", "version": "1.0.0", "model_sha256": SHA, "sequence": 1},
        {"valid": False, "model_name": "", "version": "", "model_sha256": "", "sequence": 0},
    ],
    "capabilities": {"slot_size": 1 << 20, "ram_budget": 1 << 18, "engine": False, "payload_decoder": False},
}
GOOD_REPORT = {
    "ts": 0.0,  # set when sent
    "model_sha256": SHA,
    "inference_count": 5,
    "latency_us_mean": 120.0,
    "latency_estimated": True,
    "class_histogram": [3, 2],
    "confidence_mean": 0.8,
    "errors": 0,
    "arena_bytes": 2048,
}


def _with(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key)
        else:
            out[key] = value
    return out


_DROP = object()


def _malformed(
    env: ProtocolEnv, v: dict[str, Draft202012Validator], capture: Capture, rollout_id: int, v2_id: int
) -> None:
    env.provision(PROBE, hardware_class=1)
    admin = env.service_client("tinyfleet-probe")
    try:

        def send(kind: str, doc: Any, retain: bool = False) -> None:
            payload = json.dumps(doc).encode()
            admin.publish(f"tf/{PROBE}/{kind}", payload, qos=1, retain=retain).wait_for_publish(10)

        def malformed_count(kind: str) -> int:
            return int(env.api.gateway_stats()["malformed"].get(kind, 0))

        # A valid state first (accepted), against which "no effect" is judged.
        assert not errors(v["reported.schema.json"], GOOD_REPORTED)
        send("presence", {"online": True}, retain=True)
        send("reported", GOOD_REPORTED, retain=True)
        wait_for(
            lambda: env.api.device(PROBE)["active_model_sha256"] == SHA, 30, "the probe's reported state"
        )
        before = env.api.device(PROBE)
        action = env.api.rollout_actions(rollout_id)[0]
        reports_before = env.api.telemetry_summary(device_id=PROBE)["reports"]

        report = _with(GOOD_REPORT, ts=time.time())
        ops_too_big = _with(
            GOOD_REPORTED, capabilities={"slot_size": 1 << 20, "ram_budget": 1, "ops": [70000]}
        )
        bad_slot = _with(GOOD_REPORTED, slots=[{"valid": True, "model_sha256": "abc"}, {"valid": False}])
        cases: list[tuple[str, Any]] = [
            ("status", {"state": "confirmed"}),  # missing action_id
            ("status", {"action_id": action["id"], "state": "finished"}),  # unknown state
            ("status", {"action_id": action["id"], "state": "failed", "error_code": 300}),  # out of range
            ("status", {"action_id": action["id"], "state": "failed", "error_code": "6"}),  # wrong type
            ("reported", _with(GOOD_REPORTED, phase="sleeping")),
            ("reported", _with(GOOD_REPORTED, hardware_class="1")),
            ("reported", _with(GOOD_REPORTED, runtime_version=_DROP)),
            ("reported", _with(GOOD_REPORTED, runtime_version=2**32)),
            ("reported", _with(GOOD_REPORTED, active_slot=2)),
            ("reported", ops_too_big),
            ("reported", _with(GOOD_REPORTED, capabilities={"ram_budget": 1})),  # slot_size missing
            ("reported", bad_slot),
            ("presence", {"online": "yes"}),
            ("presence", {}),
            ("presence", {"online": True, "boot": 7}),  # boot without seq
            ("telemetry", {"reports": [_with(report, model_sha256=SHA.upper())]}),
            ("telemetry", {"reports": [_with(report, inference_count=-1)]}),
            ("telemetry", {"reports": [_with(report, errors=_DROP)]}),
            ("telemetry", {"reports": [_with(report, latency_estimated="no")]}),
            ("telemetry", {"reports": [report] * 101}),
            ("telemetry", {"report": [report]}),
        ]
        for kind, doc in cases:
            assert errors(v[SCHEMA_OF[kind]], doc), f"the {kind} schema accepts {doc}"
            count = malformed_count(kind)
            send(kind, doc)
            wait_for(lambda k=kind, c=count: malformed_count(k) == c + 1, 30, f"the server to refuse {doc}")

        # Chunk requests the schema refuses get a chunk error (4.3), not a chunk.
        chunk_cases = [
            ({"package_id": "p", "offset": 0, "length": 0}, 100),
            ({"package_id": "p", "offset": -1, "length": 10}, 40),
            ({"package_id": "p", "length": 10}, 40),
            ({"package_id": "p" * 256, "offset": 0, "length": 10}, 100),
            ({"package_id": "p\u00e9", "offset": 0, "length": 10}, 100),
            ({"package_id": "p", "offset": 0, "length": "10"}, 100),
        ]
        for doc, code in chunk_cases:
            assert errors(v["chunk-request.schema.json"], doc), f"the chunk request schema accepts {doc}"
            replies = len([m for m in capture.snapshot() if m[0] == f"tf/{PROBE}/chunk"])
            send("chunk/req", doc)

            def answered(n: int = replies) -> bool:
                return len([m for m in capture.snapshot() if m[0] == f"tf/{PROBE}/chunk"]) > n

            wait_for(answered, 30, f"the answer to {doc}")
            reply = [m for m in capture.snapshot() if m[0] == f"tf/{PROBE}/chunk"][replies][1]
            assert reply[0] == 0xFF and reply[1] == code, (doc, reply)

        # Nothing changed: the probe's state, the action, the stored telemetry.
        after = env.api.device(PROBE)
        for key in ("reported", "capabilities", "online", "active_model_sha256", "runtime_version"):
            assert after[key] == before[key], key
        again = next(a for a in env.api.rollout_actions(rollout_id) if a["id"] == action["id"])
        assert (again["state"], again["error_code"]) == (action["state"], action["error_code"])
        assert env.api.telemetry_summary(device_id=PROBE)["reports"] == reports_before

        # The valid telemetry report is accepted (so the refusals above were about the bad fields).
        assert not errors(v["telemetry.schema.json"], {"reports": [report]})
        send("telemetry", {"reports": [report]})
        wait_for(
            lambda: env.api.telemetry_summary(device_id=PROBE)["reports"] == reports_before + 1,
            30,
            "the valid report stored",
        )

        # An aborted rollout whose device never answered: the server publishes desired `none` (4.4).
        r = env.api.create_rollout(
            name="schema-abort", model_version_id=v2_id, selector={"device_ids": [PROBE]}, start=True
        )
        wait_for(
            lambda: (env.api.device(PROBE)["desired"] or {}).get("operation") == "install", 30, "install"
        )
        env.api.rollout_command(r["id"], "abort")
        wait_for(lambda: (env.api.device(PROBE)["desired"] or {}).get("operation") == "none", 30, "none")

        def none_seen() -> bool:
            return any(
                t == f"tf/{PROBE}/desired" and p and json.loads(p)["operation"] == "none"
                for t, p, _r in capture.snapshot()
            )

        wait_for(none_seen, 30, "desired none on the broker")
        for t, p, _r in capture.snapshot():
            if t == f"tf/{PROBE}/desired" and p:
                assert not errors(v["desired.schema.json"], json.loads(p)), p
    finally:
        admin.disconnect()
        admin.loop_stop()


# ----- PROTOCOL 5.2 numbers, decoded as the text says -----------------------------------------------------


class _DocDecoder:
    """The range decoder and the *number* of PROTOCOL 5.2, written from the text (not from the code)."""

    def __init__(self, data: bytes, move_bits: int) -> None:
        self.data, self.pos, self.move_bits = data, 4, move_bits
        self.range, self.code = 0xFFFFFFFF, int.from_bytes(data[:4].ljust(4, b"\0"), "big")

    def _normalize(self) -> None:
        while self.range < 1 << 24:
            byte = self.data[self.pos] if self.pos < len(self.data) else 0
            self.pos += 1
            self.range = (self.range << 8) & 0xFFFFFFFF
            self.code = ((self.code << 8) | byte) & 0xFFFFFFFF

    def bit(self, probs: list[int], i: int) -> int:
        p = probs[i]
        bound = (self.range >> 11) * p
        if self.code < bound:
            self.range, probs[i], bit = bound, p + ((2048 - p) >> self.move_bits), 0
        else:
            self.code, self.range, probs[i], bit = (
                self.code - bound,
                self.range - bound,
                p - (p >> self.move_bits),
                1,
            )
        self._normalize()
        return bit

    def direct(self) -> int:
        self.range >>= 1
        bit = int(self.code >= self.range)
        if bit:
            self.code -= self.range
        self._normalize()
        return bit

    def number(self, probs: list[int], used: set[int]) -> int:
        node = 1
        for _ in range(6):
            node = 2 * node + self.bit(probs, node)
        bits = node - 64
        if bits <= 1:
            return bits
        low = min(bits - 1, 3)
        high = 0
        for _ in range(bits - 1 - low):
            high = (high << 1) | self.direct()
        node = 1
        for _ in range(low):  # a tree of depth `low`, not always 3
            used.add(64 + bits * 8 + node)
            node = 2 * node + self.bit(probs, 64 + bits * 8 + node)
        return (1 << (bits - 1)) | high << low | (node - (1 << low))


def test_numbers_decode_as_protocol_5_2_says() -> None:
    from tinyfleet.signing.rangecoder import NUMBER_PROBS, Encoder, encode_number

    values = [0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 100, 1000, 65535, 2**31 + 12345, 2**32 - 1]
    enc = Encoder(4)
    probs = [1024] * NUMBER_PROBS
    for value in values:
        encode_number(enc, probs, value)
    dec = _DocDecoder(enc.finish(), 4)
    probs = [1024] * NUMBER_PROBS
    for value in values:
        used: set[int] = set()
        assert dec.number(probs, used) == value
        bits = value.bit_length()
        # bits 2 and 3: one and two tree levels, in entries 64 + bits*8 + 1.. (bits = 3: 89, then 90 or 91).
        assert len(used) == (0 if bits <= 1 else min(bits - 1, 3))
        assert all(64 + bits * 8 < e < 64 + bits * 8 + 8 for e in used)
