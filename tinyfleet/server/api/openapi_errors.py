"""Error responses in the OpenAPI schema: every operation lists the errors it can answer, all with the
one body every error has (`{"detail": "one line"}`, app.py's handlers), instead of FastAPI's default
that documents only 422, with a body shape (a list of errors) the API never sends."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string", "description": "what is wrong, in one line"}},
}
REF = {"$ref": "#/components/schemas/Error"}
DESCRIPTIONS = {
    "401": "missing or wrong API token",
    "403": "the caller's role is below the route's (README: Users, roles and tokens)",
    "404": "a resource named in the request does not exist",
    "409": "conflicts with existing data",
    "413": "request body above the size limit",
    "416": "range not satisfiable (one range bytes=a-b within the body is supported)",
    "422": "invalid request (the detail names each field and why)",
    "503": "database unavailable, retry later",
}
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _codes(path: str, method: str, op: dict[str, Any]) -> set[str]:
    params = op.get("parameters", [])
    codes = {"422"} if params or "requestBody" in op else set()
    if path.startswith("/api/"):
        codes |= {"401", "403", "503"}
        if any(p["in"] == "path" or p["name"].endswith("_id") for p in params):
            codes.add("404")
        if method in WRITE_METHODS:
            codes |= {"404", "409"}
    if "requestBody" in op:
        codes.add("413")
    if any(p["in"] == "header" and p["name"].lower() == "range" for p in params):
        codes.add("416")
    return codes


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error responses to each operation of `schema` (in place) and return it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = op.setdefault("responses", {})
            for code in sorted(_codes(path, method, op)):
                responses[code] = {
                    "description": DESCRIPTIONS[code],
                    "content": {"application/json": {"schema": REF}},
                }
    # FastAPI's 422 body models, now referenced by no operation.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema
