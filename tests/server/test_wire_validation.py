"""Run-time validation of device messages against the PROTOCOL 4 schemas (one source: the packaged
copy in tinyfleet/server/wire_schemas/, identical to docs/schemas/)."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.support.paths import REPO
from tinyfleet.server.services.messages import DeviceMessages, decode_chunk_error
from tinyfleet.server.services.wire_validation import SCHEMA_OF_KIND, check_message, schema_texts


def test_the_packaged_schemas_are_the_documented_ones() -> None:
    docs = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "docs" / "schemas").glob("*.schema.json")}
    assert schema_texts() == docs, "link every docs/schemas/*.schema.json from tinyfleet/server/wire_schemas/"
    assert set(SCHEMA_OF_KIND.values()) <= set(docs)


def test_check_message_names_the_field_and_the_schema() -> None:
    assert check_message("presence", {"online": True}) is None
    problem = check_message("presence", {"online": "yes"})
    assert problem is not None and problem.startswith("online:") and "presence.schema.json" in problem
    problem = check_message("status", {"action_id": "a", "state": "finished"})
    assert problem is not None and "state" in problem
    # 4.4: the server ignores a bad offset or bytes_received, the rest of the status applies.
    assert check_message("status", {"action_id": "a", "state": "failed", "offset": -1}) is None
    assert check_message("status", {"action_id": "a", "state": "failed", "error_code": 256}) is not None
    assert check_message("desired", {"anything": 1}) is None  # not a device message

    # 4.2: the absence of the counters and slot names older devices omit is taken; their values are not.
    minimal = {
        "runtime_version": 256,
        "hardware_class": 1,
        "phase": "idle",
        "active_slot": 0,
        "slots": [{"valid": True, "model_sha256": "ab" * 32, "sequence": 1}],
    }
    assert check_message("reported", minimal) is None
    problem = check_message("reported", {**minimal, "last_error": "none"})
    assert problem is not None and problem.startswith("last_error:")
    assert check_message("reported", {**minimal, "phase": "asleep"}) is not None
    assert check_message("reported", {k: v for k, v in minimal.items() if k != "phase"}) is not None


GOOD_REPORTED: dict[str, Any] = {
    "runtime_version": 256,
    "hardware_class": 1,
    "phase": "idle",
    "active_slot": None,
    "security_floor": 0,
    "download_offset": 0,
    "last_error": 0,
    "slots": [{"valid": False, "model_name": "", "version": "", "model_sha256": "", "sequence": 0}] * 2,
}


def test_the_server_refuses_what_a_schema_refuses_with_one_log_line(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api.ok("POST", "/api/devices", 201, json={"id": "val-1", "hardware_class": 1})
    msgs = DeviceMessages(api.ctx.db, default_chunk_size=1024)
    assert msgs.handle("tf/val-1/reported", json.dumps(GOOD_REPORTED).encode()) == []
    # Passes the hand-written checks of messages.py, not the schema: security_floor is an integer >= 0.
    negative = {**GOOD_REPORTED, "security_floor": -1}
    with caplog.at_level(logging.WARNING, logger="tinyfleet.server.services.messages"):
        msgs.handle("tf/val-1/reported", json.dumps(negative).encode())
    assert msgs.stats.snapshot()["malformed"] == {"reported": 1}
    (record,) = [r for r in caplog.records if "schema" in r.getMessage()]
    assert "security_floor" in record.getMessage() and record.exc_info is None
    # A chunk request the schema refuses gets a chunk error (4.3): extra checks never go silent.
    (reply,) = msgs.handle("tf/val-1/chunk/req", b'{"package_id": "p", "offset": 0, "length": 1}')
    assert reply.payload[:1] == b"\x01"  # well-formed: a chunk (empty: unknown package)
    (reply,) = msgs.handle("tf/val-1/chunk/req", b'{"package_id": "p", "offset": 0.5, "length": 1}')
    code, reason = decode_chunk_error(reply.payload)
    assert code == 40 and "offset" in reason
