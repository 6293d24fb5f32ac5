"""Identifiers: short, random, safe in MQTT topics and in the chunk header (ASCII, < 256 bytes).

Device ids are MQTT usernames too (docs/PROTOCOL.md 4.6), so they share one namespace with the
server's own broker accounts. The prefix `tinyfleet-` is reserved for those accounts: no device id may
start with it, and the server refuses to start with an MQTT user a device could also have. Without that
rule a device provisioned as `tinyfleet-server` would replace the gateway's password (locking it out of
its own broker) and inherit its ACL rights over every device.
"""

from __future__ import annotations

import re
import secrets

DEVICE_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{2,63}$"
DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
SERVICE_PREFIX = "tinyfleet-"


def new_id(prefix: str, nbytes: int = 8) -> str:
    return f"{prefix}-{secrets.token_hex(nbytes)}"


def is_device_id(value: str) -> bool:
    """Whether `value` is an id a device may have (the pattern, and outside the reserved prefix)."""
    return bool(DEVICE_ID_RE.match(value)) and not value.startswith(SERVICE_PREFIX)


def check_device_id(value: str) -> str:
    """`value` if a device may have it, else ValueError with a one-line reason."""
    if value.startswith(SERVICE_PREFIX):
        raise ValueError(
            f"device id {value[:64]!r} is reserved: ids starting with {SERVICE_PREFIX!r} name the"
            " server's own MQTT accounts"
        )
    if not DEVICE_ID_RE.match(value):
        raise ValueError(
            f"device id {value[:64]!r} must be 3..64 characters of a-z, 0-9, '_' and '-',"
            " starting with a letter or digit"
        )
    return value


def check_service_username(value: str) -> str:
    """`value` if it can never be a device's MQTT username, else ValueError saying how to fix it."""
    if not value or ":" in value or any(c.isspace() for c in value):
        raise ValueError(f"MQTT user {value!r} cannot be written to a mosquitto password file")
    if DEVICE_ID_RE.match(value) and not value.startswith(SERVICE_PREFIX):
        raise ValueError(
            f"MQTT user {value!r} could also be a device id, and a device provisioned under it would take"
            f" over the server's broker account; name it with the reserved prefix, e.g."
            f" '{SERVICE_PREFIX}server'"
        )
    return value
