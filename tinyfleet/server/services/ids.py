"""Identifiers: short, random, safe in MQTT topics and in the chunk header (ASCII, < 256 bytes)."""

from __future__ import annotations

import re
import secrets

DEVICE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{2,63}$")


def new_id(prefix: str, nbytes: int = 8) -> str:
    return f"{prefix}-{secrets.token_hex(nbytes)}"
