"""Issue 19: a timed-out action leaves the device's retained desired state (it becomes `none`), and a
malformed chunk request is answered with a chunk error (PROTOCOL 4.3), not dropped."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session

from tests.support.rollout_fleet import SQLITE_ONLY
from tinyfleet.server.models import Device
from tinyfleet.server.services.messages import (
    decode_chunk,
    decode_chunk_error,
    encode_chunk,
    encode_chunk_error,
)
from tinyfleet.signing.codes import ErrorCode

# --- a timed-out action is withdrawn from the desired state -----------------------------------------


@SQLITE_ONLY
def test_timed_out_action_leaves_desired_state_and_returning_device_does_not_install(
    fleet,
):
    silent = fleet.add_device("dev-0")
    fleet.add_device("dev-1")
    r = fleet.create(action_timeout_seconds=30, failure_threshold={"count": 1}, max_concurrent=5)
    fleet.ctx.rollout_driver.tick(fleet.t0)
    first = fleet.desired("dev-0")
    assert first["operation"] == "install" and first["action_id"]
    # dev-0 goes silent before it acts on the desired state; dev-1 installs
    del fleet.devices["dev-0"]
    fleet.step(fleet.t0 + 1)
    sent = fleet.ctx.rollout_driver.publisher.sent
    sent.clear()
    published: list[tuple[str, str, str]] = []
    real_publish = fleet.ctx.rollout_driver.publisher.publish_desired

    def publish(device_id: str, desired: dict) -> None:
        with Session(fleet.ctx.db) as other:  # published after the commit
            stored = other.get(Device, device_id).desired
        published.append((device_id, desired["operation"], stored["operation"]))
        real_publish(device_id, desired)

    fleet.ctx.rollout_driver.publisher.publish_desired = publish  # type: ignore[method-assign]
    fleet.step(fleet.t0 + 40)
    [timed_out] = fleet.actions(r["id"], state="timed_out")
    assert timed_out["device_id"] == "dev-0" and timed_out["id"] == first["action_id"]
    # the retained desired state (the last one published) is `none`, as stored
    assert published == [("dev-0", "none", "none")]
    assert [doc for dev, doc in sent if dev == "dev-0"][-1] == fleet.desired("dev-0")
    assert fleet.desired("dev-0")["operation"] == "none" and fleet.desired("dev-0")["action_id"] is None
    # dev-1's finished action keeps its desired state (nothing to withdraw)
    assert fleet.desired("dev-1")["operation"] == "install"
    # dev-0 comes back and reads its retained desired state: nothing to do, nothing fetched
    fleet.devices["dev-0"] = silent
    silent.come_online()
    fleet.step(fleet.t0 + 50)
    assert silent.chunk_requests == 0 and silent.active_sha() == fleet.sha(fleet.v1)
    assert fleet.rollout(r["id"])["state"] == "paused"
    assert [a["state"] for a in fleet.actions(r["id"]) if a["device_id"] == "dev-0"] == ["timed_out"]


@SQLITE_ONLY
def test_timed_out_hanging_device_gets_none_and_stays_on_old_model(fleet):
    dev = fleet.add_device("dev-0")
    dev.behaviour = "hang"  # reports downloading once, then nothing
    r = fleet.create(action_timeout_seconds=30, failure_threshold={"count": 5})
    fleet.step(fleet.t0)
    assert fleet.desired("dev-0")["operation"] == "install"
    fleet.step(fleet.t0 + 31)
    assert [a["state"] for a in fleet.actions(r["id"])] == ["timed_out"]
    assert fleet.desired("dev-0")["operation"] == "none"
    # it restarts (forgets what it handled) and would now work: the desired state says nothing to do
    dev.behaviour, dev.done_actions = "ok", set()
    dev.come_online()
    fleet.step(fleet.t0 + 40)
    assert dev.chunk_requests == 0 and dev.active_sha() == fleet.sha(fleet.v1)
    assert [a["state"] for a in fleet.actions(r["id"])] == ["timed_out"]


# --- malformed chunk requests are answered with a chunk error ---------------------------------------

U32 = 0xFFFFFFFF
PID = "pkg-1"

MALFORMED = [
    # (payload, code, word the reason contains)
    ({"package_id": PID, "offset": 0, "length": 0}, ErrorCode.BAD_MESSAGE, "length"),
    ({"package_id": PID, "offset": 0, "length": -1}, ErrorCode.BAD_MESSAGE, "length"),
    ({"package_id": PID, "offset": 0, "length": U32 + 1}, ErrorCode.BAD_MESSAGE, "length"),
    ({"package_id": PID, "offset": 0, "length": 1.0}, ErrorCode.BAD_MESSAGE, "length"),
    ({"package_id": PID, "offset": 0, "length": True}, ErrorCode.BAD_MESSAGE, "length"),
    ({"package_id": PID, "offset": 0, "length": "64"}, ErrorCode.BAD_MESSAGE, "length"),
    ({"package_id": PID, "offset": 0}, ErrorCode.BAD_MESSAGE, "length"),
    ({"package_id": PID, "offset": -5, "length": 10}, ErrorCode.BAD_OFFSET, "offset"),
    ({"package_id": PID, "offset": U32 + 1, "length": 10}, ErrorCode.BAD_OFFSET, "offset"),
    ({"package_id": PID, "offset": 2.5, "length": 10}, ErrorCode.BAD_OFFSET, "offset"),
    ({"package_id": PID, "offset": None, "length": 10}, ErrorCode.BAD_OFFSET, "offset"),
    ({"package_id": PID, "length": 10}, ErrorCode.BAD_OFFSET, "offset"),
    ({"offset": 0, "length": 10}, ErrorCode.BAD_MESSAGE, "package_id"),
    ({"package_id": "", "offset": 0, "length": 10}, ErrorCode.BAD_MESSAGE, "package_id"),
    ({"package_id": "p" * 256, "offset": 0, "length": 10}, ErrorCode.BAD_MESSAGE, "package_id"),
    ({"package_id": "pkg-\u00e9", "offset": 0, "length": 10}, ErrorCode.BAD_MESSAGE, "package_id"),
    ({"package_id": "pkg\n1", "offset": 0, "length": 10}, ErrorCode.BAD_MESSAGE, "package_id"),
    ({"package_id": 7, "offset": 0, "length": 10}, ErrorCode.BAD_MESSAGE, "package_id"),
    ([PID, 0, 10], ErrorCode.BAD_MESSAGE, "JSON object"),
    (b"not json", ErrorCode.BAD_MESSAGE, "JSON"),
    (b"\xff\xfe", ErrorCode.BAD_MESSAGE, "UTF-8"),
    (b'{"package_id": "x", "pad": "' + b"x" * 16_400 + b'"}', ErrorCode.BAD_MESSAGE, "above"),
]


def _payload(obj: object) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj).encode()


def _malformed_count(fleet) -> int:
    return fleet.ctx.stats.snapshot()["malformed"].get("chunk/req", 0)


@SQLITE_ONLY
@pytest.mark.parametrize(("request_obj", "code", "word"), MALFORMED)
def test_malformed_chunk_request_gets_an_error_reply(fleet, request_obj, code, word):
    fleet.add_device("dev-0")
    before = _malformed_count(fleet)
    replies = fleet.messages.handle("tf/dev-0/chunk/req", _payload(request_obj))
    assert [o.topic for o in replies] == ["tf/dev-0/chunk"] and not replies[0].retain
    buf = replies[0].payload
    assert buf[0] == 0xFF and buf[1] == code
    got_code, reason = decode_chunk_error(buf)
    assert got_code == code and word in reason and 0 < len(reason) <= 200
    with pytest.raises(ValueError):  # never mistaken for a chunk by a format-1 decoder
        decode_chunk(buf)
    assert _malformed_count(fleet) == before + 1


@SQLITE_ONLY
def test_chunk_error_bytes_as_documented(fleet):
    fleet.add_device("dev-0")
    [reply] = fleet.messages.handle("tf/dev-0/chunk/req", b'{"package_id":"p","offset":0,"length":0}')
    assert reply.payload == b"\xff\x64length must be an integer in 1..4294967295"
    [reply] = fleet.messages.handle("tf/dev-0/chunk/req", b'{"package_id":"p","offset":-1,"length":8}')
    assert reply.payload == b"\xff\x28offset must be an integer in 0..4294967295"
    assert encode_chunk_error(100, "") == b"\xff\x64?"  # a reason is never empty
    assert len(encode_chunk_error(100, "x" * 500)) == 2 + 200


@SQLITE_ONLY
def test_well_formed_chunk_requests_unchanged(fleet):
    fleet.add_device("dev-0")
    pkg = fleet.v1["packages"][0]
    data = fleet.api.client.get(f"/api/packages/{pkg['id']}/download").content
    before = _malformed_count(fleet)

    def ask(**req) -> bytes:
        [reply] = fleet.messages.handle("tf/dev-0/chunk/req", json.dumps(req).encode())
        assert reply.topic == "tf/dev-0/chunk"
        return reply.payload

    # extra keys ignored; the smallest length and the largest offset are well-formed
    pid, size = pkg["id"], len(data)
    assert ask(package_id=pid, offset=0, length=100, extra=1) == encode_chunk(pid, 0, size, data[:100])
    assert ask(package_id=pid, offset=10, length=1) == encode_chunk(pid, 10, size, data[10:11])
    assert ask(package_id=pid, offset=0, length=U32) == encode_chunk(pid, 0, size, data[:512])
    # well-formed but unservable: the empty chunk, as before (not an error reply)
    assert ask(package_id=pid, offset=U32, length=8) == encode_chunk(pid, U32, size, b"")
    assert ask(package_id="pkg-unknown", offset=0, length=8) == encode_chunk("pkg-unknown", 0, 0, b"")
    assert _malformed_count(fleet) == before
