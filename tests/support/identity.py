"""Users of each role with a token each, made through the API with the bootstrap token."""

from __future__ import annotations

from typing import Any

ROLE_NAMES = {"viewer": "vera", "operator": "otto", "admin": "ada"}


def tokens_by_role(api: Any) -> dict[str, str]:
    """role -> a fresh token of a user with that role (users vera, otto and ada)."""
    tokens = {}
    for role, name in ROLE_NAMES.items():
        api.ok("POST", "/api/users", 201, json={"name": name, "role": role})
        tokens[role] = api.ok("POST", "/api/tokens", 201, json={"name": "test", "user": name})["token"]
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
