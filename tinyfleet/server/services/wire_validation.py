"""Run-time validation of device messages against the PROTOCOL section 4 JSON Schemas.

One source: docs/schemas/, packaged as tinyfleet/server/wire_schemas/ (symbolic links in the source
tree, copies in a built wheel), compiled once with jsonschema-rs (well under a microsecond per message
on an idle core; the pure-Python jsonschema about 50, docs/BENCHMARKS.md). The hand-written checks in
messages.py stay: they give the PROTOCOL's specific codes and cover what a schema cannot say."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs

# Which schema a device message kind (the topic's last part, PROTOCOL 4) must satisfy.
SCHEMA_OF_KIND = {
    "reported": "reported.schema.json",
    "presence": "presence.schema.json",
    "chunk/req": "chunk-request.schema.json",
    "status": "status.schema.json",
    "telemetry": "telemetry.schema.json",
}
# 4.4: the server is more lenient than the schema about these status fields (a bad value is ignored, the
# rest of the status still applies), so an error in them alone does not refuse the message.
LENIENT_STATUS_FIELDS = ("offset", "bytes_received")
# 4.2: a device must send these, but the server has always taken a reported state without them (older
# devices; absent counters read as 0, absent slot names as unknown): their *absence* alone does not
# refuse it. What is present must still match the schema.
LENIENT_REPORTED_ABSENT = frozenset({"security_floor", "download_offset", "last_error"})
LENIENT_SLOT_ABSENT = frozenset({"model_name", "version"})


def schema_texts() -> dict[str, str]:
    """File name -> text of every packaged schema."""
    folder = resources.files("tinyfleet.server.wire_schemas")
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".schema.json")
    }


@cache
def schemas() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in schema_texts().items()}


@cache
def validator(schema_name: str) -> Any:
    """A compiled validator for one schema file; references between the files resolve offline."""
    docs = schemas()
    registry = jsonschema_rs.Registry([(doc["$id"], doc) for doc in docs.values()])
    return jsonschema_rs.Draft202012Validator(docs[schema_name], registry=registry)


def problem(schema_name: str, doc: Any, tolerated: Callable[[Any], bool] | None = None) -> str | None:
    """None when `doc` is valid (apart from errors `tolerated` accepts), else one line naming the first
    error and where it is."""
    v = validator(schema_name)
    if v.is_valid(doc):  # the fast path: most messages are valid
        return None
    for error in v.iter_errors(doc):
        if tolerated is not None and tolerated(error):
            continue
        where = "/".join(str(p) for p in error.instance_path) or "the message"
        return f"{where}: {error.message} ({schema_name})"[:300]
    return None


def _reported_leniency(error: Any) -> bool:
    path = list(error.instance_path)
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        if path == []:
            return kind.property in LENIENT_REPORTED_ABSENT
        return len(path) == 2 and path[0] == "slots" and kind.property in LENIENT_SLOT_ABSENT
    # fewer than two slots: the missing ones read as not valid
    return path == ["slots"] and isinstance(kind, jsonschema_rs.ValidationErrorKind.MinItems)


def check_message(kind: str, doc: Any) -> str | None:
    """What is wrong with a device message of `kind` per its schema (None: valid or no schema)."""
    name = SCHEMA_OF_KIND.get(kind)
    if name is None:
        return None
    if kind == "reported":
        return problem(name, doc, _reported_leniency)
    found = problem(name, doc)
    if found is None or kind != "status" or not isinstance(doc, dict):
        return found
    strict = {k: v for k, v in doc.items() if k not in LENIENT_STATUS_FIELDS}
    return problem(name, strict)


def prewarm() -> None:
    """Compile every validator now (a server does it at start, not on its first message)."""
    for name in SCHEMA_OF_KIND.values():
        validator(name)
